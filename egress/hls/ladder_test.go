package hls

import (
	"strings"
	"testing"
)

func TestPrefixURIs(t *testing.T) {
	in := "#EXTM3U\n#EXT-X-MAP:URI=\"a_init.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\",INDEPENDENT=YES\n#EXTINF:1.0,\nseg1.mp4?x=1\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.mp4\"\n"
	got := string(prefixURIs([]byte(in), "r.q."))
	for _, want := range []string{`URI="r.q.a_init.mp4"`, `URI="r.q.p1.mp4"`, "\nr.q.seg1.mp4?x=1\n", `URI="r.q.p2.mp4"`, "#EXTM3U\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("prefixed playlist lacks %q:\n%s", want, got)
		}
	}
}

func TestLayerFile(t *testing.T) {
	for file, want := range map[string][2]string{
		"r.q.main_stream.m3u8": {"q", "main_stream.m3u8"},
		"r.my-rid.x_init.mp4":  {"my-rid", "x_init.mp4"},
	} {
		rid, inner, ok := layerFile(file)
		if !ok || rid != want[0] || inner != want[1] {
			t.Errorf("layerFile(%q) = %q %q %v", file, rid, inner, ok)
		}
	}
	for _, file := range []string{"index.m3u8", "r..x", "r.q", "r.q."} {
		if _, _, ok := layerFile(file); ok {
			t.Errorf("layerFile(%q) ok", file)
		}
	}
}

func TestAttrs(t *testing.T) {
	inf := `#EXT-X-STREAM-INF:BANDWIDTH=1200000,AVERAGE-BANDWIDTH=1000000,CODECS="avc1.42c01f,mp4a.40.2",RESOLUTION=1280x720,AUDIO="audio"`
	inf = renameGroup(inf, "AUDIO", "q")
	inf = setAttr(inf, "RESOLUTION", "320x180")
	inf = setAttr(inf, "BANDWIDTH", "200000")
	inf = setAttr(inf, "AVERAGE-BANDWIDTH", "200000")
	want := `#EXT-X-STREAM-INF:BANDWIDTH=200000,AVERAGE-BANDWIDTH=200000,CODECS="avc1.42c01f,mp4a.40.2",RESOLUTION=320x180,AUDIO="audio-q"`
	if inf != want {
		t.Fatalf("got  %s\nwant %s", inf, want)
	}
	media := `#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",AUTOSELECT=YES,DEFAULT=YES,URI="audio_stream.m3u8"`
	if got := renameGroup(media, "GROUP-ID", "q"); !strings.Contains(got, `GROUP-ID="audio-q"`) {
		t.Fatalf("renameGroup: %s", got)
	}
}
