// Package framestest publishes the shipped H.264 + Opus test clip into a
// relay hub in real time, for tests of frame readers (HLS, RTMP push)
// that need no WebRTC peer.
package framestest

import (
	"context"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// Tracks are the clip's track infos, as a WebRTC publisher announces them.
var Tracks = []relay.TrackInfo{
	{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
		Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}},
	{Kind: codec.Audio, Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}},
}

// Clip is the loaded test clip.
type Clip struct {
	Video [][][]byte // access units (NAL units)
	VDur  []time.Duration
	Audio [][]byte
	ADur  []time.Duration
}

// Load reads testdata/clip.h264 and clip.ogg from dir.
func Load(dir string) (*Clip, error) {
	v, err := clip.LoadH264(dir + "/clip.h264")
	if err != nil {
		return nil, err
	}
	a, err := clip.LoadOpus(dir + "/clip.ogg")
	if err != nil {
		return nil, err
	}
	c := &Clip{}
	for _, s := range v {
		var au h264.AnnexB
		if err := au.Unmarshal(s.Data); err != nil {
			return nil, err
		}
		c.Video = append(c.Video, au)
		c.VDur = append(c.VDur, s.Duration)
	}
	for _, s := range a {
		c.Audio = append(c.Audio, s.Data)
		c.ADur = append(c.ADur, s.Duration)
	}
	return c, nil
}

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}

// Publish claims path on hub with the clip's tracks.
func Publish(hub *relay.Hub, path string) (*relay.Publication, error) {
	return hub.Publish(path, Tracks, nopSource{})
}

// Start claims path on hub with the clip's tracks and plays the clip into
// it in real time, looping, until stop; stop waits for the player to
// return and ends the publication (calling it again does nothing).
func (c *Clip) Start(hub *relay.Hub, path string) (pub *relay.Publication, stop func(), err error) {
	pub, err = Publish(hub, path)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Play(ctx, pub)
	}()
	var once sync.Once
	return pub, func() {
		once.Do(func() {
			cancel()
			<-done
			pub.End("test over")
		})
	}, nil
}

// Play writes the clip to pub in real time, looping, until ctx ends.
func (c *Clip) Play(ctx context.Context, pub *relay.Publication) { c.PlayHeld(ctx, pub, nil) }

// PlayHeld is Play with a pause: before each video frame, held (if not nil)
// may return a channel; nothing is sent until it is closed, and then the
// RTP timestamps and the clock go on by the time held, as a publisher's
// whose tab stalled. Video resumes where it stopped (mid-GOP).
func (c *Clip) PlayHeld(ctx context.Context, pub *relay.Publication, held func() <-chan struct{}) {
	vp, ap := frames.NewPacketizer(codec.MimeH264, 96), frames.NewPacketizer(codec.MimeOpus, 111)
	var vts, ats uint32 = 90000, 48000
	var vt, at time.Duration
	start := time.Now()
	ai := 0
	for i := 0; ; i++ {
		if i == len(c.Video) {
			i = 0
		}
		if wait := holdOf(held); wait != nil {
			began := time.Now()
			select {
			case <-ctx.Done():
				return
			case <-wait:
			}
			d := time.Since(began)
			vts += uint32(d * 90000 / time.Second)
			ats += uint32(d * 48000 / time.Second)
			start = start.Add(d)
		}
		for _, p := range vp.Packetize(vts, c.Video[i]) {
			pub.WriteRTP(0, &p.Header, p.Payload)
		}
		vts += uint32(c.VDur[i] * 90000 / time.Second)
		vt += c.VDur[i]
		for at < vt {
			if ai == len(c.Audio) {
				ai = 0
			}
			for _, p := range ap.Packetize(ats, [][]byte{c.Audio[ai]}) {
				pub.WriteRTP(1, &p.Header, p.Payload)
			}
			ats += uint32(c.ADur[ai] * 48000 / time.Second)
			at += c.ADur[ai]
			ai++
		}
		if d := vt - time.Since(start); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
	}
}

func holdOf(held func() <-chan struct{}) <-chan struct{} {
	if held == nil {
		return nil
	}
	return held()
}
