package rtc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// ErrCheckBusy: too many connectivity checks run at once.
var ErrCheckBusy = errors.New("too many connectivity checks at once")

// Check answers a connectivity self-test's offer (a data channel only)
// over one transport ("udp" or "tcp"; anything else: all), so that the
// browser finds out whether that path reaches the gateway: the answer has
// only that transport's candidates, and the offer's other candidates are
// dropped too, or the gateway's own checks toward them would find the
// other path. Once the channel opens, the gateway sends one message. The
// caller closes the PeerConnection.
func (e *Engine) Check(ctx context.Context, offer, transport string) (*webrtc.PeerConnection, string, error) {
	pc, err := e.reader.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*webrtc.PeerConnection, string, error) {
		_ = pc.Close()
		return nil, "", err
	}
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { _ = dc.SendText("livegate") })
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: keepCandidates(offer, transport)}); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrBadOffer, err))
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrBadOffer, err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	return pc, keepCandidates(pc.LocalDescription().SDP, transport), nil
}

// keepCandidates drops the candidate lines of other transports.
func keepCandidates(sdp, transport string) string {
	if transport != "udp" && transport != "tcp" {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if strings.HasPrefix(l, "a=candidate:") {
			f := strings.Fields(l)
			if len(f) > 2 && !strings.EqualFold(f[2], transport) {
				continue
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}
