package hls

import (
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gohlslibPlaylist is a media playlist as gohlslib writes it, window
// starting at segment first, with segments first..last and two parts of
// the next one.
func gohlslibPlaylist(first, last int) string {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:10\n#EXT-X-TARGETDURATION:2\n" +
		"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.5,CAN-SKIP-UNTIL=12\n" +
		"#EXT-X-PART-INF:PART-TARGET=0.2\n")
	b.WriteString("#EXT-X-MEDIA-SEQUENCE:" + itoa(first) + "\n#EXT-X-MAP:URI=\"p_video1_init.mp4?t=1\"\n")
	for s := first; s <= last; s++ {
		if s < firstSegmentID {
			b.WriteString("#EXT-X-GAP\n#EXTINF:2.00000,\ngap.mp4\n")
			continue
		}
		b.WriteString("#EXT-X-PART:DURATION=0.20000,URI=\"p_video1_part" + itoa(2*s) + ".mp4?t=1\",INDEPENDENT=YES\n")
		b.WriteString("#EXT-X-PART:DURATION=0.20000,URI=\"p_video1_part" + itoa(2*s+1) + ".mp4?t=1\"\n")
		b.WriteString("#EXTINF:2.00000,\np_video1_seg" + itoa(s) + ".mp4?t=1\n")
	}
	b.WriteString("#EXT-X-PART:DURATION=0.20000,URI=\"p_video1_part" + itoa(2*last+2) + ".mp4?t=1\",INDEPENDENT=YES\n")
	b.WriteString("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p_video1_part" + itoa(2*last+3) + ".mp4?t=1\"\n")
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// Parameter sets of a Chromium host at 480x270 and 640x360.
var (
	spsSmall, _ = hex.DecodeString("6742c01e8c8d40f047f5350606060784423500")
	spsLarge, _ = hex.DecodeString("6742c01f8c8d405017fcb35060606078442350")
	ppsChrome   = []byte{0x68, 0xce, 0x3c, 0x80}
)

// TestRewriteMarksParameterChanges: segments that start new parameters get
// EXT-X-DISCONTINUITY and their init section; the discontinuity sequence
// counts the ones that left the window; PART-TARGET, PART-HOLD-BACK and
// TARGETDURATION are the pinned values and delta updates are not offered.
func TestRewriteMarksParameterChanges(t *testing.T) {
	var vs versions
	seg := func(s uint64, size int) {
		sps := spsSmall
		if size == 2 {
			sps = spsLarge
		}
		if _, _, err := vs.observe(sps, ppsChrome); err != nil {
			t.Fatal(err)
		}
		vs.segmentStarts(s, false)
	}
	seg(7, 1)
	seg(8, 1)
	seg(9, 2)  // a step
	seg(10, 2) //
	seg(11, 1) // back to the first size: its init again
	seg(12, 1)
	vs.started(9, time.Date(2026, 1, 2, 3, 4, 5, 60e6, time.UTC))
	pinned := 0
	mr := mediaRewrite{vs: &vs,
		initURI: func(n int) string { return "I" + strconv.Itoa(n) + ".mp4?t=1" },
		pin: func(parts []time.Duration, target int) (time.Duration, int) {
			pinned++
			return 210 * time.Millisecond, 3
		}}

	out := string(mr.rewrite([]byte(gohlslibPlaylist(5, 12))))
	for _, want := range []string{
		"#EXT-X-TARGETDURATION:3\n",
		"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.63\n",
		"#EXT-X-PART-INF:PART-TARGET=0.21\n",
		"#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-MAP:URI=\"I0.mp4?t=1\"\n",
		"p_video1_seg8.mp4?t=1\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"I1.mp4?t=1\"\n" +
			"#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:05.060Z\n#EXT-X-PART:DURATION=0.20000,URI=\"p_video1_part18.mp4",
		"p_video1_seg10.mp4?t=1\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"I0.mp4?t=1\"\n#EXT-X-PART:DURATION=0.20000,URI=\"p_video1_part22.mp4",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "CAN-SKIP-UNTIL") || strings.Contains(out, "DISCONTINUITY-SEQUENCE") || strings.Count(out, "#EXT-X-DISCONTINUITY\n") != 2 {
		t.Fatalf("unexpected\n%s", out)
	}

	// The window moved past the first step: counted in the sequence; the
	// segment that starts the second step leads the window, with its tag.
	out = string(mr.rewrite([]byte(gohlslibPlaylist(11, 14))))
	if !strings.Contains(out, "#EXT-X-MEDIA-SEQUENCE:11\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-MAP:URI=\"I0.mp4?t=1\"\n#EXT-X-DISCONTINUITY\n#EXT-X-PART") {
		t.Fatalf("window at 11:\n%s", out)
	}
	out = string(mr.rewrite([]byte(gohlslibPlaylist(12, 14))))
	if !strings.Contains(out, "#EXT-X-MEDIA-SEQUENCE:12\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-MAP:URI=\"I0.mp4?t=1\"\n#EXT-X-PART") {
		t.Fatalf("window at 12:\n%s", out)
	}
	if pinned != 3 {
		t.Fatalf("pin called %d times", pinned)
	}
	// Audio playlists keep their own init section but get the same
	// discontinuities, so that players align the renditions.
	mr.initURI = nil
	out = string(mr.rewrite([]byte(strings.ReplaceAll(gohlslibPlaylist(11, 14), "video1", "audio2"))))
	if !strings.Contains(out, "#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-MAP:URI=\"p_audio2_init.mp4?t=1\"\n#EXT-X-DISCONTINUITY\n") ||
		strings.Count(out, "#EXT-X-MAP") != 1 {
		t.Fatalf("audio:\n%s", out)
	}
}

// TestSegmenterFollowsGohlslib: a segment ends at the first keyframe at
// least the minimum duration after its start.
func TestSegmenterFollowsGohlslib(t *testing.T) {
	s := segmenter{min: time.Second, clock: 90000}
	steps := []struct {
		pts  int64
		key  bool
		seg  uint64
		move bool
	}{
		{0, true, 7, true},
		{45000, true, 7, false},  // 0.5 s: too early
		{89999, true, 7, false},  // just under 1 s
		{90000, false, 7, false}, // not a keyframe
		{90000 + 3000, true, 8, true},
		{180000 + 3000, true, 9, true},
	}
	for _, st := range steps {
		seg, move := s.frame(st.pts, st.key)
		if seg != st.seg || move != st.move {
			t.Fatalf("pts %d key %v: segment %d new %v, want %d %v", st.pts, st.key, seg, move, st.seg, st.move)
		}
	}
}

// TestRewriteNoticesSegmentsOutOfStep: a segment whose program date-time is
// not the start the writer recorded is reported.
func TestRewriteNoticesSegmentsOutOfStep(t *testing.T) {
	var vs versions
	if _, _, err := vs.observe(spsSmall, ppsChrome); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	vs.segmentStarts(7, false)
	vs.started(7, at)
	vs.started(8, at.Add(2*time.Second))
	var bad []uint64
	mr := mediaRewrite{vs: &vs, pin: func([]time.Duration, int) (time.Duration, int) { return 200 * time.Millisecond, 3 },
		outOfStep: func(seg uint64, _, _ time.Time) { bad = append(bad, seg) }}
	pl := "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n" +
		"#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:05.006Z\n#EXTINF:2.00000,\np_video1_seg7.mp4\n" +
		"#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:07.106Z\n#EXTINF:2.00000,\np_video1_seg8.mp4\n"
	mr.rewrite([]byte(pl))
	if len(bad) != 1 || bad[0] != 8 {
		t.Fatalf("reported %v, want [8]", bad)
	}
}
