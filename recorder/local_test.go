package recorder

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Records 20 s of the looped clip (fed 8x faster than real time) to local
// storage and checks the VOD playlist with ffprobe.
func TestRecordLocal20s(t *testing.T) {
	dir := testDir(t)
	spool, store := filepath.Join(dir, "spool"), filepath.Join(dir, "recordings")
	m, hub := newLocalManager(t, spool, store, nil)
	pub, in := record(t, m, hub, "room/cam")
	f := newFeeder(t)
	f.feed(pub, 20*time.Second, 8)
	time.Sleep(100 * time.Millisecond) // let the relay workers deliver
	if _, err := m.Stop(in.ID); err != nil {
		t.Fatal(err)
	}
	in = waitStatus(t, m, in.ID, StatusComplete, 10*time.Second)
	t.Logf("recording: %+v", in)
	if in.Segments < 4 {
		t.Errorf("%d segments, want about 5", in.Segments)
	}
	pl := string(readFile(t, m, in.ID, "index.m3u8"))
	for _, want := range []string{"#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-MAP:URI=\"init_1.mp4\"", "#EXT-X-ENDLIST"} {
		if !strings.Contains(pl, want) {
			t.Errorf("playlist lacks %s:\n%s", want, pl)
		}
	}
	checkPlaylist(t, filepath.Join(store, "room/cam", in.ID, "index.m3u8"), 20, 1)
}
