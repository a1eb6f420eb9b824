package rtcclient

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Publisher is a WHIP session sending H.264 video and Opus audio samples.
type Publisher struct {
	*Session
	Video *webrtc.TrackLocalStaticSample
	Audio *webrtc.TrackLocalStaticSample
	// KeyframeRequests counts PLI/FIR received for the video track.
	KeyframeRequests atomic.Int64
}

// H264ConstrainedBaseline is the codec the test clip is encoded with.
var H264ConstrainedBaseline = webrtc.RTPCodecCapability{
	MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
	SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
}

// Opus is stereo Opus at 48 kHz.
var Opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}

// Publish opens a WHIP session with one video and (if audio) one audio track.
func Publish(ctx context.Context, endpoint string, opts Options, video webrtc.RTPCodecCapability, audio bool) (*Publisher, error) {
	p := &Publisher{}
	var err error
	p.Video, err = webrtc.NewTrackLocalStaticSample(video, "video", "livegate-client")
	if err != nil {
		return nil, err
	}
	if audio {
		if p.Audio, err = webrtc.NewTrackLocalStaticSample(Opus, "audio", "livegate-client"); err != nil {
			return nil, err
		}
	}
	p.Session, err = Connect(ctx, endpoint, opts, func(pc *webrtc.PeerConnection) error {
		for _, t := range []*webrtc.TrackLocalStaticSample{p.Video, p.Audio} {
			if t == nil {
				continue
			}
			tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return fmt.Errorf("add %s track: %w", t.Kind(), err)
			}
			isVideo := t == p.Video
			go func() {
				// Reading RTCP keeps pion's interceptors (NACK responder,
				// reports) running; it ends when the connection closes.
				for {
					pkts, _, err := tr.Sender().ReadRTCP()
					if err != nil {
						return
					}
					for _, pkt := range pkts {
						switch pkt.(type) {
						case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
							if isVideo {
								p.KeyframeRequests.Add(1)
							}
						}
					}
				}
			}()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// WriteVideo sends one access unit (Annex-B) lasting d.
func (p *Publisher) WriteVideo(s media.Sample) error { return p.Video.WriteSample(s) }

// WriteAudio sends one Opus packet.
func (p *Publisher) WriteAudio(s media.Sample) error {
	if p.Audio == nil {
		return nil
	}
	return p.Audio.WriteSample(s)
}
