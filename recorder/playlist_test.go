package recorder

import (
	"strings"
	"testing"
)

// A resolution step (new init) keeps the timeline: the playlist switches
// EXT-X-MAP without a discontinuity. A lost segment is one.
func TestPlaylistNewInitIsNotADiscontinuity(t *testing.T) {
	m := &Manifest{Finished: true, Segments: []FileInfo{
		{Name: "seg_000001.m4s", Init: "init_1.mp4", Duration: 1.2},
		{Name: "seg_000002.m4s", Init: "init_2.mp4", Duration: 1.8},
		{Name: "seg_000003.m4s", Init: "init_3.mp4", Duration: 3.7},
		{Name: "seg_000004.m4s", Init: "init_3.mp4", Duration: 3.7, Lost: true},
		{Name: "seg_000005.m4s", Init: "init_3.mp4", Duration: 3.7},
	}}
	pl := m.Playlist()
	if n := strings.Count(pl, "#EXT-X-MAP:"); n != 3 {
		t.Errorf("%d EXT-X-MAP tags, want 3:\n%s", n, pl)
	}
	if n := strings.Count(pl, "#EXT-X-DISCONTINUITY\n"); n != 1 {
		t.Errorf("%d discontinuities, want 1 (the lost segment):\n%s", n, pl)
	}
	if !strings.Contains(pl, "#EXT-X-DISCONTINUITY\n#EXTINF:3.700000,\nseg_000005.m4s") {
		t.Errorf("the discontinuity is not before the segment after the lost one:\n%s", pl)
	}
}
