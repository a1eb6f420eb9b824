package rtc

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"

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

// Defaults that WHIP ingest and WHEP egress share.
const (
	// DefaultMaxTracks bounds the media sections of one offer.
	DefaultMaxTracks = 4
	// DefaultConnectTimeout ends a session whose peer has not connected.
	DefaultConnectTimeout = 15 * time.Second
)

// NoCodecError says no offered codec can be used; it names what was offered
// and why each media section was refused.
type NoCodecError struct {
	Offered   []string
	Supported []string
	Sections  []Rejection
}

func (e *NoCodecError) Error() string {
	msg := fmt.Sprintf("no supported codec: offered %s; supported %s",
		strings.Join(e.Offered, ", "), strings.Join(e.Supported, ", "))
	for _, r := range e.Sections {
		msg += "; " + r.String()
	}
	return msg
}

// Reasons a media section is refused. They are metric label values: keep
// the set small and stable.
const (
	ReasonCodec         = "unsupported_codec"  // no offered codec is forwarded
	ReasonH264Profile   = "h264_profile"       // H.264 only in profiles that cannot be used
	ReasonH264Mode      = "h264_packetization" // H.264 only in a packetization mode that cannot be used
	ReasonH264Level     = "h264_level"         // the stream's level is above the viewer's, without level asymmetry
	ReasonDirection     = "direction"          // the section does not carry media the right way
	ReasonNoTrack       = "no_track"           // the stream has no track for this viewer's section
	ReasonDataChannel   = "data_channel"       // data channels are not relayed
	ReasonTooManyTracks = "too_many_tracks"    // more sections of a kind than are used
	ReasonNoMid         = "no_mid"             // no a=mid: the section cannot be addressed
)

// Rejection is a media section that the answer refuses (port 0).
type Rejection struct {
	Mid    string
	Kind   string
	Reason string // one of the Reason constants
	Detail string // for people: logs and error bodies
}

func (r Rejection) String() string {
	return fmt.Sprintf("%s section mid %q refused (%s): %s", r.Kind, r.Mid, r.Reason, r.Detail)
}

// OfferedCodec is one payload type of an offered media section.
type OfferedCodec struct {
	PayloadType uint8
	codec.Codec
}

// Media is one m= section of an offer.
type Media struct {
	Mid  string
	Kind codec.Kind // audio, video, or another m= type such as application
	// Direction as offered: sendrecv (the default), sendonly, recvonly or
	// inactive.
	Direction string
	// Closed means the offerer itself rejected the section (port 0).
	Closed bool
	Codecs []OfferedCodec
}

// Offer is a parsed SDP offer.
type Offer struct {
	SDP   string
	Media []Media
	// BundleTag is the first mid of the offer's BUNDLE group (RFC 8843), if
	// it has one.
	BundleTag string
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
	for _, a := range sd.Attributes {
		if f := strings.Fields(a.Value); a.Key == "group" && len(f) > 1 && f[0] == "BUNDLE" {
			o.BundleTag = f[1]
			break
		}
	}
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		m := Media{Mid: mid, Kind: codec.Kind(md.MediaName.Media), Direction: "sendrecv",
			Closed: md.MediaName.Port.Value == 0}
		if _, bundleOnly := md.Attribute("bundle-only"); bundleOnly {
			m.Closed = false // RFC 8843: port 0 with bundle-only is not a rejection
		}
		for _, d := range []string{"sendrecv", "sendonly", "recvonly", "inactive"} {
			if _, ok := md.Attribute(d); ok {
				m.Direction = d
			}
		}
		if m.Kind == codec.Audio || m.Kind == codec.Video {
			for _, f := range md.MediaName.Formats {
				pt, err := strconv.ParseUint(f, 10, 8)
				if err != nil {
					return nil, fmt.Errorf("%w: payload type %q", ErrBadOffer, f)
				}
				c, ok := codec.FromSDP(md, uint8(pt))
				if !ok {
					continue
				}
				m.Codecs = append(m.Codecs, OfferedCodec{PayloadType: uint8(pt), Codec: c})
			}
		}
		o.Media = append(o.Media, m)
	}
	return o, nil
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
