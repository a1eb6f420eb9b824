package composite

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// output publishes the encoder's H.264 and Opus into the relay as one
// stream, like an ingest: packetised once, with sender reports so WebRTC
// viewers line audio up with video. The publication outlives encoder
// restarts: timestamps continue across them, so readers never notice
// more than a pause.
type output struct {
	hub  *relay.Hub
	path string
	log  *slog.Logger

	mu      sync.Mutex
	pub     *relay.Publication
	vp, ap  *frames.Packetizer
	runOK   bool // first PTS of this encoder run seen
	first   int64
	vBase   uint32
	aBase   uint32
	anchor  time.Time // wall time of PTS first
	lastV   uint32
	lastA   uint32
	lastAt  time.Time
	haveAny bool
	srAt    [2]time.Time
	pubErr  string
	// published is pub != nil, readable without mu: mu is held while
	// publishing, which calls into the hub and its event subscribers.
	published atomic.Bool
	// taken is why the path could not be published because another
	// publisher holds it (nil otherwise); readable without mu, as above.
	taken atomic.Pointer[string]
}

func newOutput(hub *relay.Hub, path string, log *slog.Logger) *output {
	return &output{hub: hub, path: path, log: log,
		vp: frames.NewPacketizer(codec.MimeH264, 96), ap: frames.NewPacketizer(codec.MimeOpus, 111)}
}

type nopSource struct{}

// RequestKeyframe implements relay.Source: the encoder has a fixed GOP
// and late readers start from the relay's GOP cache.
func (nopSource) RequestKeyframe(int) {}

func (o *output) live() bool { return o.published.Load() }

// takenBy says why the output path cannot be published while another
// publisher holds it ("" if it is not held).
func (o *output) takenBy() string {
	if p := o.taken.Load(); p != nil {
		return *p
	}
	return ""
}

// newRun prepares for a new encoder, whose timestamps start anew.
func (o *output) newRun() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runOK = false
}

// base fixes this run's RTP bases at its first PTS: after the last
// timestamps written plus the wall time since, so they keep rising.
func (o *output) base(pts int64) {
	if o.runOK {
		return
	}
	o.runOK, o.first, o.anchor = true, pts, time.Now()
	if o.haveAny {
		gap := time.Since(o.lastAt)
		o.vBase = o.lastV + uint32(gap.Seconds()*90000) + 3000
		o.aBase = o.lastA + uint32(gap.Seconds()*48000) + 960
	}
}

func (o *output) video(pts int64, au [][]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.base(pts)
	if o.pub == nil && !o.publish(au) {
		return
	}
	d := pts - o.first
	ts := o.vBase + uint32(d)
	for _, p := range o.vp.Packetize(ts, au) {
		o.pub.WriteRTP(0, &p.Header, p.Payload)
	}
	o.lastV, o.lastAt, o.haveAny = ts, time.Now(), true
	o.report(0, ts, time.Duration(d)*time.Second/90000)
}

func (o *output) audio(pts int64, pkts [][]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.base(pts)
	if o.pub == nil {
		return
	}
	d := (pts - o.first) * 48000 / 90000
	ts := o.aBase + uint32(d)
	for _, pkt := range pkts {
		for _, p := range o.ap.Packetize(ts, [][]byte{pkt}) {
			o.pub.WriteRTP(1, &p.Header, p.Payload)
		}
		o.lastA = ts
		ts += uint32(codec.OpusSamples(pkt))
	}
	o.report(1, o.lastA, time.Duration(d)*time.Second/48000)
}

// report sends a sender report for track i at most once a second.
func (o *output) report(i int, ts uint32, media time.Duration) {
	now := time.Now()
	if now.Sub(o.srAt[i]) < time.Second {
		return
	}
	o.srAt[i] = now
	o.pub.WriteSenderReport(i, ntp(o.anchor.Add(media)), ts)
}

// publish claims the output path once the first access unit with
// parameter sets comes (they describe the track to WebRTC viewers).
func (o *output) publish(au [][]byte) bool {
	var sps, pps []byte
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	if sps == nil || pps == nil {
		return false
	}
	tracks := []relay.TrackInfo{h264Info(sps, pps), {Kind: codec.Audio,
		Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}}}
	pub, err := o.hub.Publish(o.path, tracks, nopSource{})
	if err != nil {
		if msg := err.Error(); msg != o.pubErr {
			o.pubErr = msg
			o.log.Warn("composite: cannot publish the output stream", "stream", o.path, "err", err)
		}
		if errors.Is(err, relay.ErrAlreadyLive) {
			// Tried again with every access unit: it is published as soon
			// as the other publisher leaves.
			why := fmt.Sprintf("%s is published by someone else (another publisher took the composite's name); "+
				"the composite publishes it when that stream ends, or stop it and start one with another name", o.path)
			o.taken.Store(&why)
		}
		return false
	}
	o.pub, o.pubErr = pub, ""
	o.taken.Store(nil)
	o.published.Store(true)
	return true
}

func (o *output) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pub != nil {
		o.pub.End("composite stopped")
		o.pub = nil
		o.published.Store(false)
	}
}

// h264Info describes the encoder's H.264 the way browsers offer it
// (constrained baseline), with the parameter sets for frame readers.
func h264Info(sps, pps []byte) relay.TrackInfo {
	pli := "42e01f"
	if len(sps) >= 4 {
		flags := sps[2]
		if sps[1] == 66 && flags&0x40 != 0 {
			flags = 0xe0
		}
		pli = strings.ToLower(fmt.Sprintf("%02x%02x%02x", sps[1], flags, sps[3]))
	}
	fmtp := "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + pli +
		";sprop-parameter-sets=" + base64.StdEncoding.EncodeToString(sps) + "," + base64.StdEncoding.EncodeToString(pps)
	return relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000, Fmtp: fmtp}}
}

// ntp is t as a 64-bit NTP timestamp.
func ntp(t time.Time) uint64 {
	const epoch = 2208988800 // 1900 to 1970
	s := uint64(t.Unix()) + epoch
	f := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | f
}
