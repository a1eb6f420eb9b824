package hls

import (
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/codec"
)

var (
	resolution = regexp.MustCompile(`RESOLUTION=(\d+x\d+)`)
	avc1Codec  = regexp.MustCompile(`CODECS="[^"]*(avc1\.[0-9a-f]{6})`)
)

// TestMasterFollowsTheLargestPicture: a publisher that starts at 320x180
// and steps up to 640x360 (as a browser host ramps) gets a multivariant
// playlist that says 640x360 and the larger picture's level once the muxer
// has seen it, and keeps saying so when the publisher steps down again.
func TestMasterFollowsTheLargestPicture(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	ramp := rampClip(t) // 640x360, 320x180, ... every 2 s
	// 320x180 for 4 s (the clip publisher cannot be asked for keyframes:
	// the first segment ends at the second), then 640x360, 320x180, ...
	lo, hi := ramp.Video[60:120], ramp.Video[:60]
	c := *ramp
	c.Video = nil
	for _, gop := range [][][][]byte{lo, lo, hi, lo, hi, lo} {
		c.Video = append(c.Video, gop...)
	}
	c.VDur = ramp.VDur[:0:0]
	for range c.Video {
		c.VDur = append(c.VDur, time.Second/30)
	}
	bigSPS, _ := codec.H264ParamSets(ramp.Video[0])
	smallSPS, _ := codec.H264ParamSets(ramp.Video[60])
	var big, small h264.SPS
	if err := big.Unmarshal(bigSPS); err != nil {
		t.Fatal(err)
	}
	if err := small.Unmarshal(smallSPS); err != nil {
		t.Fatal(err)
	}
	if bigSPS[3] <= smallSPS[3] {
		t.Fatalf("the clips' levels %d and %d: the test needs the larger picture at a higher level", bigSPS[3], smallSPS[3])
	}
	f := startClip(t, Params{}, &c)
	index := f.base + "/hls/room/cam/index.m3u8"
	read := func() (string, string, string) {
		res, pl := get(t, index)
		if res.StatusCode != 200 {
			t.Fatalf("index.m3u8: %d %s", res.StatusCode, pl)
		}
		r, k := resolution.FindStringSubmatch(pl), avc1Codec.FindStringSubmatch(pl)
		if r == nil || k == nil {
			t.Fatalf("index.m3u8 without RESOLUTION or avc1 CODECS:\n%s", pl)
		}
		return r[1], k[1], pl
	}
	wantBig := "avc1." + hex.EncodeToString(bigSPS[1:4])
	res, codecs, _ := read()
	t.Logf("first: %s %s", res, codecs)
	if res != "320x180" || codecs != "avc1."+hex.EncodeToString(smallSPS[1:4]) {
		t.Fatalf("first multivariant playlist says %s %s, want the first picture's 320x180 avc1.%x", res, codecs, smallSPS[1:4])
	}
	stepped := time.Time{}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		res, codecs, pl := read()
		switch {
		case res == "640x360" && codecs == wantBig:
			if stepped.IsZero() {
				stepped = time.Now()
				t.Logf("640x360 %s", codecs)
			}
			if strings.Count(pl, "#EXT-X-STREAM-INF:") != 1 {
				t.Errorf("variants changed:\n%s", pl)
			}
		case !stepped.IsZero():
			t.Fatalf("after the step up the playlist went back to %s %s", res, codecs)
		}
	}
	if stepped.IsZero() {
		t.Fatalf("the multivariant playlist never said 640x360 %s", wantBig)
	}
	if time.Since(stepped) < 4*time.Second {
		t.Errorf("640x360 seen only %v before the end: the test covers no step down", time.Since(stepped))
	}
}

// TestPeakMaster: the first variant gets the peak; the audio and other
// lines stay.
func TestPeakMaster(t *testing.T) {
	pl := "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\n" +
		`#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",AUTOSELECT=YES,DEFAULT=YES,URI="audio2_stream.m3u8"` + "\n\n" +
		`#EXT-X-STREAM-INF:BANDWIDTH=1000,AVERAGE-BANDWIDTH=900,CODECS="avc1.42e00c,mp4a.40.2",RESOLUTION=320x180,FRAME-RATE=30.000,AUDIO="audio"` + "\nvideo1_stream.m3u8\n"
	var p peak
	if got := string(p.master([]byte(pl))); got != pl {
		t.Errorf("no parameters seen: changed to\n%s", got)
	}
	p = peak{width: 1280, height: 720, profile: 0x42, compat: 0xe0, level: 0x1f}
	want := strings.Replace(strings.Replace(pl, "avc1.42e00c", "avc1.42e01f", 1), "320x180", "1280x720", 1)
	if got := string(p.master([]byte(pl))); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
