package frames

import (
	"strings"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// H264AndOpus picks the tracks that outputs made of H.264 and AAC (HLS,
// RTMP push) take from st: its first H.264 video track (nil when it has
// none) and its first Opus audio track (nil when it has none), which they
// transcode to AAC.
func H264AndOpus(st *relay.Stream) (video, audio *relay.Track) {
	for _, t := range st.Tracks() {
		mime := t.Info().Codec.MimeType
		switch {
		case video == nil && strings.EqualFold(mime, codec.MimeH264):
			video = t
		case audio == nil && strings.EqualFold(mime, codec.MimeOpus):
			audio = t
		}
	}
	return video, audio
}
