package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// publisher WHIP-publishes the clip in real time, looping, with a timing
// SEI in every video access unit.
type publisher struct {
	pub                   *rtcclient.Publisher
	frames, audio, errors atomic.Uint64
	cancel                context.CancelFunc
	done                  sync.WaitGroup
}

// startPublisher connects, waits for the PeerConnection and starts sending.
func startPublisher(ctx context.Context, cfg config, whipURL string, transport http.RoundTripper) (*publisher, error) {
	video, err := clip.LoadH264(cfg.clipPath)
	if err != nil {
		return nil, err
	}
	if cfg.keyframeOnPLI && !slices.ContainsFunc(video, func(s clip.Sample) bool { return s.Keyframe }) {
		return nil, fmt.Errorf("%s: no keyframe to answer keyframe requests with", cfg.clipPath)
	}
	var audio []clip.Sample
	if cfg.audioPath != "" {
		if audio, err = clip.LoadOpus(cfg.audioPath); err != nil {
			return nil, err
		}
	}
	api, err := rtcclient.LoopbackAPI(nil)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.connectTimeout)
	defer cancel()
	opts := rtcclient.Options{API: api, HTTP: &http.Client{Transport: transport, Timeout: cfg.connectTimeout}}
	pub, err := rtcclient.Publish(cctx, whipURL, opts, rtcclient.H264ConstrainedBaseline, audio != nil)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	for pub.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if cctx.Err() != nil {
			closeSession(pub.Session)
			return nil, fmt.Errorf("publish: not connected within %v (state %s)", cfg.connectTimeout, pub.PC.ConnectionState())
		}
		time.Sleep(10 * time.Millisecond)
	}

	p := &publisher{pub: pub}
	pctx, pcancel := context.WithCancel(context.Background())
	p.cancel = pcancel
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		var (
			buf     []byte
			counter uint32
			idx     int
			reqs    int64
		)
		// clip.Play paces by the clip's frame durations; the frame sent
		// is video[idx], which jumps ahead to the next keyframe when the
		// gateway asked for one and keyframeOnPLI is set, as an encoder
		// would answer a PLI.
		_ = clip.Play(pctx, video, func(s clip.Sample, _ int) error {
			if cfg.keyframeOnPLI {
				if r := pub.KeyframeRequests.Load(); r != reqs {
					reqs = r
					for !video[idx].Keyframe {
						idx = (idx + 1) % len(video)
					}
				}
			}
			f := video[idx]
			idx = (idx + 1) % len(video)
			buf = insertTimingSEI(buf[:0], f.Data, time.Now().UnixNano(), counter)
			counter++
			// WriteSample packetises synchronously (the payloader copies),
			// so buf can be reused for the next frame.
			if err := pub.WriteVideo(media.Sample{Data: buf, Duration: s.Duration}); err != nil {
				p.errors.Add(1)
			} else {
				p.frames.Add(1)
			}
			return nil
		})
	}()
	if audio != nil {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			_ = clip.Play(pctx, audio, func(s clip.Sample, _ int) error {
				if err := pub.WriteAudio(media.Sample{Data: s.Data, Duration: s.Duration}); err != nil {
					p.errors.Add(1)
				} else {
					p.audio.Add(1)
				}
				return nil
			})
		}()
	}
	return p, nil
}

func (p *publisher) stop() {
	p.cancel()
	p.done.Wait()
	closeSession(p.pub.Session)
}

func closeSession(s *rtcclient.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Close(ctx) // best effort: the gateway also ends it when ICE times out
}
