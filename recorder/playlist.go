package recorder

import (
	"fmt"
	"math"
	"strings"
)

// Playlist is the HLS media playlist of a recording: an EVENT playlist
// while it is being recorded (players may follow it), a VOD playlist with
// ENDLIST once it has ended. Segment URIs are relative, so the same text
// works served by the gateway or stored next to the segments.
func (m *Manifest) Playlist() string {
	target := 1.0
	for _, s := range m.Segments {
		target = math.Max(target, s.Duration)
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", int(math.Ceil(target-0.001)))
	b.WriteString("#EXT-X-MEDIA-SEQUENCE:0\n")
	if m.Finished {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:VOD\n")
	} else {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:EVENT\n")
	}
	b.WriteString("#EXT-X-INDEPENDENT-SEGMENTS\n")
	init, gap := "", false
	for _, s := range m.Segments {
		if s.Lost {
			gap = true
			continue
		}
		// A new init alone (the publisher changed resolution) keeps the
		// timeline: EXT-X-MAP tells players, no discontinuity needed.
		if gap || s.Discontinuity {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		gap = false
		if s.Init != init {
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", s.Init)
			init = s.Init
		}
		fmt.Fprintf(&b, "#EXTINF:%.6f,\n%s\n", s.Duration, s.Name)
	}
	if m.Finished {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.String()
}
