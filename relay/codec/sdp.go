package codec

import (
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Codec describes a track's codec as negotiated with its publisher: what
// an SDP rtpmap and fmtp line say about one payload type.
type Codec struct {
	MimeType  string `json:"mimeType"`
	ClockRate uint32 `json:"clockRate"`
	Channels  uint16 `json:"channels,omitempty"`
	Fmtp      string `json:"fmtp,omitempty"`
}

// FromSDP reads the rtpmap ("96 H264/90000", "111 opus/48000/2") and fmtp
// attributes of payload type pt in a media section. ok is false when the
// section has no usable rtpmap for pt.
func FromSDP(md *sdp.MediaDescription, pt uint8) (c Codec, ok bool) {
	prefix := strconv.Itoa(int(pt)) + " "
	for _, a := range md.Attributes {
		switch {
		case a.Key == "rtpmap" && strings.HasPrefix(a.Value, prefix):
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
			ok = true
		case a.Key == "fmtp" && strings.HasPrefix(a.Value, prefix):
			c.Fmtp = strings.TrimPrefix(a.Value, prefix)
		}
	}
	return c, ok
}
