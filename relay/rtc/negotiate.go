package rtc

import (
	"context"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Answer completes the offer/answer exchange on pc and returns the answer
// with all candidates (gathering is immediate: host candidates on the
// shared UDP port). pion sees the offer reduced to the plan's payload types;
// the answer refuses the plan's closed sections. prepare runs between
// setting the offer and creating the answer, to add tracks or restrict
// codecs.
func Answer(ctx context.Context, pc *webrtc.PeerConnection, offer *Offer, plan Plan, prepare func() error) (string, error) {
	remote, err := restrictOffer(offer.SDP, plan.Keep)
	if err != nil {
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: remote}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return "", err
		}
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("set answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gathering candidates: %w", ctx.Err())
	}
	mids := make([]string, len(offer.Media))
	for i, m := range offer.Media {
		mids[i] = m.Mid
	}
	// pion's own description keeps the refused sections open; they carry
	// nothing (the peer sends nothing on them, and no track is attached).
	answer, err := setDirection(pc.LocalDescription().SDP, plan.Keep, plan.Direction)
	if err != nil {
		return "", err
	}
	return closeSections(answer, mids, plan.Close, offer.BundleTag)
}

// Negotiated finds the transceiver pion negotiated for the offer's media
// section mid (in Answer's prepare).
func Negotiated(pc *webrtc.PeerConnection, mid string) (*webrtc.RTPTransceiver, error) {
	for _, t := range pc.GetTransceivers() {
		if t.Mid() == mid {
			return t, nil
		}
	}
	return nil, fmt.Errorf("%w: media section %q not negotiated", ErrBadOffer, mid)
}

// Capability is c as pion describes a codec, with the RTCP feedback fb.
func (c OfferedCodec) Capability(fb []webrtc.RTCPFeedback) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: c.MimeType, ClockRate: c.ClockRate,
		Channels: c.Channels, SDPFmtpLine: c.Fmtp, RTCPFeedback: fb}
}

// PreferCodec makes c, with the RTCP feedback fb, the one codec t's
// section answers, under the payload type the offer gave it.
func PreferCodec(t *webrtc.RTPTransceiver, c OfferedCodec, fb []webrtc.RTCPFeedback) error {
	err := t.SetCodecPreferences([]webrtc.RTPCodecParameters{{
		RTPCodecCapability: c.Capability(fb), PayloadType: webrtc.PayloadType(c.PayloadType),
	}})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	return nil
}
