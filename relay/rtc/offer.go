package rtc

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// Errors that protocol front ends map to HTTP statuses.
var (
	ErrBadOffer          = errors.New("invalid SDP offer")
	ErrTooManyTracks     = errors.New("too many media sections")
	ErrTooManySessions   = errors.New("too many sessions")
	ErrSessionNotFound   = errors.New("session not found")
	ErrBadFragment       = errors.New("invalid trickle ICE fragment")
	ErrETagMismatch      = errors.New("ETag does not match the ICE session")
	ErrConnectionTimeout = errors.New("peer did not connect in time")
)

// NoCodecError says no offered codec can be used; it names what was offered.
type NoCodecError struct {
	Offered   []string
	Supported []string
}

func (e *NoCodecError) Error() string {
	return fmt.Sprintf("no supported codec: offered %s; supported %s",
		strings.Join(e.Offered, ", "), strings.Join(e.Supported, ", "))
}

// OfferedCodec is one payload type of an offered media section.
type OfferedCodec struct {
	PayloadType uint8
	relay.Codec
}

// Media is one m= section of an offer.
type Media struct {
	Mid    string
	Kind   codec.Kind
	Codecs []OfferedCodec
}

// Offer is a parsed SDP offer.
type Offer struct {
	SDP   string
	Media []Media
}

// ParseOffer parses and sanity-checks an SDP offer.
func ParseOffer(raw string, maxMedia int) (*Offer, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, fmt.Errorf("%w: no media sections", ErrBadOffer)
	}
	if maxMedia > 0 && len(sd.MediaDescriptions) > maxMedia {
		return nil, fmt.Errorf("%w: %d offered, at most %d allowed", ErrTooManyTracks, len(sd.MediaDescriptions), maxMedia)
	}
	o := &Offer{SDP: raw}
	for _, md := range sd.MediaDescriptions {
		kind := codec.Kind(md.MediaName.Media)
		if kind != codec.Audio && kind != codec.Video {
			continue // e.g. a data channel: not ours, pion rejects it
		}
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		m := Media{Mid: mid, Kind: kind}
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				return nil, fmt.Errorf("%w: payload type %q", ErrBadOffer, f)
			}
			c, ok := codecOf(md, uint8(pt))
			if !ok {
				continue
			}
			m.Codecs = append(m.Codecs, OfferedCodec{PayloadType: uint8(pt), Codec: c})
		}
		o.Media = append(o.Media, m)
	}
	return o, nil
}

// codecOf reads rtpmap and fmtp for a payload type.
func codecOf(md *sdp.MediaDescription, pt uint8) (relay.Codec, bool) {
	prefix := strconv.Itoa(int(pt)) + " "
	var c relay.Codec
	found := false
	for _, a := range md.Attributes {
		switch {
		case a.Key == "rtpmap" && strings.HasPrefix(a.Value, prefix):
			// "96 H264/90000" or "111 opus/48000/2"
			parts := strings.Split(strings.TrimPrefix(a.Value, prefix), "/")
			if len(parts) < 2 {
				return c, false
			}
			rate, err := strconv.ParseUint(parts[1], 10, 32)
			if err != nil {
				return c, false
			}
			c.MimeType = md.MediaName.Media + "/" + parts[0]
			c.ClockRate = uint32(rate)
			if len(parts) > 2 {
				ch, _ := strconv.ParseUint(parts[2], 10, 16)
				c.Channels = uint16(ch)
			}
			found = true
		case a.Key == "fmtp" && strings.HasPrefix(a.Value, prefix):
			c.Fmtp = strings.TrimPrefix(a.Value, prefix)
		}
	}
	return c, found
}

// Names lists the offered codecs, for error messages.
func (o *Offer) Names() []string {
	var names []string
	for _, m := range o.Media {
		for _, c := range m.Codecs {
			n := c.MimeType
			if strings.EqualFold(c.MimeType, codec.MimeH264) {
				n += " (" + c.Fmtp + ")"
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// fmtpParam returns a parameter of an fmtp line.
func fmtpParam(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// usable reports whether livegate can forward c as offered: a supported
// codec and, for H.264, non-interleaved packetization (mode 1) in a profile
// the engine registers.
func usable(c relay.Codec) bool {
	if !codec.Supported(c.MimeType) {
		return false
	}
	if strings.EqualFold(c.MimeType, codec.MimeH264) {
		if fmtpParam(c.Fmtp, "packetization-mode") != "1" {
			return false
		}
		pl := strings.ToLower(fmtpParam(c.Fmtp, "profile-level-id"))
		if len(pl) != 6 {
			return false
		}
		return slices.ContainsFunc(h264Profiles, func(p string) bool { return p[:4] == pl[:4] })
	}
	return true
}

// Choose picks one codec per media section for a publisher. Video follows
// prefs (MIME subtypes such as "h264", "vp8"; H.264 first by default because
// RTMP and HLS can carry it without transcoding), then the offer's order.
// For H.264 it prefers constrained baseline, which every player decodes.
func (m Media) Choose(prefs []string) (OfferedCodec, bool) {
	var usableCodecs []OfferedCodec
	for _, c := range m.Codecs {
		if usable(c.Codec) {
			usableCodecs = append(usableCodecs, c)
		}
	}
	if len(usableCodecs) == 0 {
		return OfferedCodec{}, false
	}
	rank := func(c OfferedCodec) int {
		sub := strings.ToLower(strings.TrimPrefix(strings.ToLower(c.MimeType), string(m.Kind)+"/"))
		r := len(prefs) * 2
		if i := slices.Index(prefs, sub); i >= 0 {
			r = i * 2
		}
		if sub == "h264" && !strings.HasPrefix(strings.ToLower(fmtpParam(c.Fmtp, "profile-level-id")), "42e0") {
			r++
		}
		return r
	}
	best := usableCodecs[0]
	for _, c := range usableCodecs[1:] {
		if rank(c) < rank(best) {
			best = c
		}
	}
	return best, true
}

// Accepts returns the offered codec a reader's media section would receive
// c as, if it can.
func (m Media) Accepts(c relay.Codec) (OfferedCodec, bool) {
	for _, oc := range m.Codecs {
		if !strings.EqualFold(oc.MimeType, c.MimeType) || !usable(oc.Codec) {
			continue
		}
		if strings.EqualFold(c.MimeType, codec.MimeH264) {
			a := strings.ToLower(fmtpParam(oc.Fmtp, "profile-level-id"))
			b := strings.ToLower(fmtpParam(c.Fmtp, "profile-level-id"))
			if len(a) < 4 || len(b) < 4 || a[:4] != b[:4] {
				continue
			}
		}
		if strings.EqualFold(c.MimeType, codec.MimeVP9) && vp9Profile(oc.Fmtp) != vp9Profile(c.Fmtp) {
			continue
		}
		return oc, true
	}
	return OfferedCodec{}, false
}

// SupportedNames lists what livegate accepts, for error messages.
func SupportedNames() []string {
	return []string{"video/H264 (packetization-mode=1)", "video/VP8", "video/VP9", "video/AV1", "audio/opus"}
}

// vp9Profile is the VP9 profile-id; absent means 0 (RFC 9628).
func vp9Profile(fmtp string) string {
	if p := fmtpParam(fmtp, "profile-id"); p != "" {
		return p
	}
	return "0"
}
