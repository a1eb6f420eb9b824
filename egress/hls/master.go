package hls

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// The multivariant playlist gohlslib writes describes the parameter sets
// the muxer started with. A browser host starts small and steps up (320x180
// to 1280x720 within seconds), so players would pick and size a rendition,
// and decide whether they can decode it, from its first picture. The
// playlist says instead the largest picture and the highest level the
// stream has had: a player that trusts it is ready for any segment of the
// stream, including one at a level the stream has not reached yet when
// it steps down and up again. Nothing else changes (names, variants), so
// a player that reads it again mid-stream finds the same renditions.

// peak is the largest picture and the highest H.264 level among a muxer's
// parameter sets.
type peak struct {
	width, height int
	// profile, constraint flags and level of the SPS with the highest
	// level (the first such): the avc1 codec string's three bytes.
	profile, compat, level byte
}

// note adds a sequence parameter set.
func (p *peak) note(sps []byte) {
	if len(sps) < 4 {
		return
	}
	var s h264.SPS
	if err := s.Unmarshal(sps); err == nil && s.Width()*s.Height() > p.width*p.height {
		p.width, p.height = s.Width(), s.Height()
	}
	if p.level == 0 || sps[3] > p.level {
		p.profile, p.compat, p.level = sps[1], sps[2], sps[3]
	}
}

var avc1 = regexp.MustCompile(`avc1\.[0-9A-Fa-f]{6}`)

// master rewrites the first variant of a gohlslib multivariant playlist
// (the muxer's own) with the peak: RESOLUTION and the avc1 entry of CODECS.
func (p peak) master(pl []byte) []byte {
	if p.level == 0 {
		return pl
	}
	lines := strings.Split(string(pl), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "#EXT-X-STREAM-INF:") {
			continue
		}
		if p.width > 0 && p.height > 0 {
			l = setAttr(l, "RESOLUTION", fmt.Sprintf("%dx%d", p.width, p.height))
		}
		lines[i] = avc1.ReplaceAllLiteralString(l, fmt.Sprintf("avc1.%02x%02x%02x", p.profile, p.compat, p.level))
		break
	}
	return []byte(strings.Join(lines, "\n"))
}

// master is the multivariant playlist gohlslib wrote, with the stream's
// peak picture size and level.
func (m *muxer) master(pl []byte) []byte {
	m.mu.Lock()
	p := m.vs.peak
	m.mu.Unlock()
	return p.master(pl)
}
