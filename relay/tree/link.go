package tree

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
)

// link is one WHEP session to a parent, feeding one local publication.
type link struct {
	parent string
	pc     *webrtc.PeerConnection
	sess   *rtcclient.Session // set under mu once the exchange succeeded
	infos  []relay.TrackInfo
	mids   []string // mid of each track, in infos order

	// lastMedia is the arrival (UnixNano) of the newest packet on any
	// track; video tells whether this link has carried video, which makes
	// its silence suspicious after a short time.
	lastMedia atomic.Int64
	video     atomic.Bool
	audio     atomic.Bool

	mu      sync.Mutex
	recv    map[int]*webrtc.RTPReceiver // by track index, once media arrives
	pub     *relay.Publication
	pending []pendingTrack // arrived before the publication existed
	done    chan struct{}
	why     string // why the link ended, set before done closes
	once    sync.Once
	wg      sync.WaitGroup
	// Keepalive answers seen by parentAnswered (follow goroutine only).
	answers    uint64
	answeredAt time.Time
	// background runs the best-effort DELETE of a closed link so that a
	// parent that does not answer never delays a failover.
	background func(func())
}

// pendingTrack is a remote track that arrived before the publication.
type pendingTrack struct {
	tr   *webrtc.TrackRemote
	recv *webrtc.RTPReceiver
}

// dial opens a WHEP session for path on parent and learns its tracks from
// the answer, so the local stream exists before the first packet.
func dial(ctx context.Context, parent, path string, opts rtcclient.Options, background func(func())) (*link, error) {
	l := &link{parent: parent, recv: map[int]*webrtc.RTPReceiver{}, done: make(chan struct{}), background: background}
	url := strings.TrimRight(parent, "/") + "/whep/" + path
	sess, err := rtcclient.Play(ctx, url, opts, func(pc *webrtc.PeerConnection) error {
		l.pc = pc
		// Registered before the answer is applied: media (the parent's
		// cached GOP) may arrive right after.
		pc.OnTrack(l.onTrack)
		// Disconnected is final for a relay link: with the relay API's
		// short keepalive it means the parent has not answered for the
		// dead time, and another parent is a re-pull away.
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			switch s {
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
				go l.closeWith("connection " + s.String())
			}
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.sess = sess
	l.mu.Unlock()
	if err := l.parseAnswer(sess.PC.RemoteDescription().SDP); err != nil {
		_ = sess.PC.Close()
		return nil, err
	}
	return l, nil
}

// parseAnswer takes the codec of every accepted media section.
func (l *link) parseAnswer(answer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return fmt.Errorf("parent's answer: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		kind := codec.Kind(md.MediaName.Media)
		if kind != codec.Audio && kind != codec.Video {
			continue
		}
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		pt, err := strconv.ParseUint(md.MediaName.Formats[0], 10, 8)
		if err != nil {
			continue
		}
		c, ok := codec.FromSDP(md, uint8(pt))
		if !ok || !codec.Supported(c.MimeType) {
			continue
		}
		l.infos = append(l.infos, relay.TrackInfo{Kind: kind, Codec: c})
		l.mids = append(l.mids, mid)
	}
	if len(l.infos) == 0 {
		return fmt.Errorf("parent's answer has no usable track")
	}
	return nil
}

func (l *link) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pub == nil {
		l.pending = append(l.pending, pendingTrack{tr, recv})
		return
	}
	l.forwardLocked(tr, recv)
}

// forwardLocked copies one remote track into the publication. Caller holds l.mu.
func (l *link) forwardLocked(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	idx := -1
	for _, t := range l.pc.GetTransceivers() {
		if t.Receiver() == recv {
			for i, mid := range l.mids {
				if mid == t.Mid() {
					idx = i
				}
			}
		}
	}
	if idx < 0 {
		return
	}
	l.recv[idx] = recv
	pub := l.pub
	kind := &l.audio
	if l.infos[idx].Kind == codec.Video {
		kind = &l.video
	}
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		forwardRTP(tr.Read, pub, idx, func() {
			l.lastMedia.Store(time.Now().UnixNano())
			kind.Store(true)
		})
	}()
	go func() {
		defer l.wg.Done()
		rtc.ReadSenderReports(recv.ReadRTCP, func(ntp uint64, rtpTime uint32) { pub.WriteSenderReport(idx, ntp, rtpTime) })
	}()
}

// forwardRTP hands the relay track idx's packets (read is the remote
// track's Read) until read fails; arrived is called for every packet read.
// One read buffer serves every packet, because nothing still reads it once
// WriteRTP has returned (see whip's readRTP): the relay copies the header's
// fields and keeps an exact-size copy of the payload (history, GOP cache),
// and pion keeps nothing of the buffer it reads into.
func forwardRTP(read func([]byte) (int, interceptor.Attributes, error), pub *relay.Publication, idx int, arrived func()) {
	buf := make([]byte, 1500)
	for {
		n, _, err := read(buf)
		if err != nil {
			return
		}
		arrived()
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) == nil {
			pub.WriteRTP(idx, &p.Header, bytes.Clone(p.Payload))
		}
	}
}

// start forwards media into pub from now on.
func (l *link) start(pub *relay.Publication) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pub = pub
	l.lastMedia.Store(time.Now().UnixNano())
	for _, p := range l.pending {
		l.forwardLocked(p.tr, p.recv)
	}
	l.pending = nil
}

// event is what ends a wait on a link.
type event int

const (
	evCancelled  event = iota // the pull's context ended
	evDead                    // the link broke or the parent ended it
	evSuperseded              // another publication took over the stream
	evSilent                  // the link is quiet and the watcher wants to act
)

// silentFor is how long the link may go without media before it is
// suspect: deadAfter once it has carried video (a picture every few tens
// of milliseconds), four times that for audio alone (Opus DTX sends little
// in silence), never before any media came.
func (l *link) silentFor(deadAfter time.Duration) time.Duration {
	switch {
	case l.video.Load():
		return deadAfter
	case l.audio.Load():
		return 4 * deadAfter
	}
	return 0
}

// parentAnswered reports whether the parent answered one of the ICE
// keepalives (sent every 100 ms on relay links) within the last d. It must
// be asked regularly while it matters: it notes when the count of answers
// last moved, counting from its first call after forgetAnswers. Only the
// goroutine that follows the link calls it.
func (l *link) parentAnswered(d time.Duration) bool {
	now := time.Now()
	st, ok := l.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats()
	if ok && (st.ResponsesReceived != l.answers || l.answeredAt.IsZero()) {
		l.answers, l.answeredAt = st.ResponsesReceived, now
	}
	return now.Sub(l.answeredAt) < d
}

// forgetAnswers restarts parentAnswered's observation: the next call takes
// the parent as heard from then.
func (l *link) forgetAnswers() { l.answeredAt = time.Time{} }

// quiet is how long the link has gone without a packet.
func (l *link) quiet() time.Duration {
	return time.Duration(time.Now().UnixNano() - l.lastMedia.Load())
}

// wait returns when the link ends, ctx ends or the publication is
// superseded, or with evSilent when watch, asked a few times per dead time
// with the link's silence so far and its limit (once it has carried
// media), reports true.
func (l *link) wait(ctx context.Context, pub *relay.Publication, deadAfter time.Duration, watch func(quiet, limit time.Duration) bool) event {
	t := time.NewTicker(max(deadAfter/10, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return evCancelled
		case <-l.done:
			return evDead
		case <-pub.Superseded():
			return evSuperseded
		case <-t.C:
			if lim := l.silentFor(deadAfter); lim > 0 && watch(l.quiet(), lim) {
				return evSilent
			}
		}
	}
}

// reason says why the link ended.
func (l *link) reason() string {
	select {
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.why
	default:
		return ""
	}
}

// RequestKeyframe forwards a coalesced keyframe request to the parent.
func (l *link) RequestKeyframe(i int) {
	l.mu.Lock()
	recv := l.recv[i]
	l.mu.Unlock()
	if recv == nil || recv.Track() == nil {
		return
	}
	_ = l.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(recv.Track().SSRC())}})
}

func (l *link) close() { l.closeWith("closed") }

// closeWith ends the link at once: the PeerConnection closes now (the
// parent gets a DTLS close when it is reachable) and the DELETE of the
// session resource runs in the background, bounded, because a parent that
// died would hold up a failover for as long as its HTTP timeout.
func (l *link) closeWith(why string) {
	l.once.Do(func() {
		l.mu.Lock()
		l.why = why
		sess := l.sess
		l.mu.Unlock()
		close(l.done)
		_ = l.pc.Close()
		if sess == nil {
			return
		}
		del := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = sess.Close(ctx)
		}
		if l.background == nil {
			del()
			return
		}
		l.background(del)
	})
}

// drain waits for the link's goroutines after close.
func (l *link) drain() { l.wg.Wait() }
