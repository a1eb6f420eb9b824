package hls

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/frames/framestest"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// rampClip is the shipped clip (640x360) with every other 2 s GOP at
// 320x180 instead (encoded here with ffmpeg): a publisher whose resolution
// steps every 2 s, each step a keyframe with new SPS/PPS, as a browser
// host's.
func rampClip(t *testing.T) *framestest.Clip {
	t.Helper()
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(t.TempDir(), "small.h264")
	testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-frames:v", "60", "-c:v", "libx264",
		"-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "60", "-bf", "0",
		"-x264-params", "repeat-headers=1", "-f", "h264", small)
	samples, err := clip.LoadH264(small)
	if err != nil || len(samples) != 60 {
		t.Fatalf("small clip: %d frames, %v", len(samples), err)
	}
	var lo [][][]byte
	for _, s := range samples {
		var au h264.AnnexB
		if err := au.Unmarshal(s.Data); err != nil {
			t.Fatal(err)
		}
		lo = append(lo, au)
	}
	r := &framestest.Clip{Audio: c.Audio, ADur: c.ADur}
	for i := 0; i+60 <= len(c.Video); i += 60 {
		r.Video = append(append(r.Video, c.Video[i:i+60]...), lo...)
		for range 120 {
			r.VDur = append(r.VDur, time.Second/30)
		}
	}
	return r
}

var (
	extMap   = regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`)
	segURI   = regexp.MustCompile(`(?m)^([0-9a-f]+)_video1_seg(\d+)\.mp4$`)
	mediaSeq = regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)
	discSeq  = regexp.MustCompile(`#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)`)
	partTgt  = regexp.MustCompile(`#EXT-X-PART-INF:PART-TARGET=([0-9.]+)`)
)

// segment is a media segment of a playlist with the init section and
// discontinuity number that apply to it.
type segment struct {
	uri, init string
	cc        int
}

func parseSegments(pl string) []segment {
	cc := 0
	if m := discSeq.FindStringSubmatch(pl); m != nil {
		cc, _ = strconv.Atoi(m[1])
	}
	init := ""
	var out []segment
	for _, l := range strings.Split(pl, "\n") {
		switch {
		case l == "#EXT-X-DISCONTINUITY":
			cc++
		case strings.HasPrefix(l, "#EXT-X-MAP:"):
			init = extMap.FindStringSubmatch(l)[1]
		case l != "" && !strings.HasPrefix(l, "#"):
			out = append(out, segment{uri: l, init: init, cc: cc})
		}
	}
	return out
}

// TestResolutionStepsKeepThePlaylist: a publisher changing resolution every
// 2 s gets one playlist that goes on (same muxer, every answer a playlist,
// PART-TARGET constant), with a discontinuity and the right init section at
// each step, numbered the same in every reload; every segment decodes with
// the init its playlist names, and ffmpeg plays across the steps.
func TestResolutionStepsKeepThePlaylist(t *testing.T) {
	ffprobe := testenv.Need(t, "ffprobe")
	f := startClip(t, Params{}, rampClip(t))
	url := f.base + "/hls/room/cam/video1_stream.m3u8"
	if res, body := get(t, f.base+"/hls/room/cam/index.m3u8"); res.StatusCode != 200 {
		t.Fatalf("index.m3u8: %d %s", res.StatusCode, body)
	}
	prefixes := map[string]bool{}
	targets := map[string]bool{}
	seen := map[string]segment{} // by URI, as first listed
	var last string
	for end := time.Now().Add(9 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		res, pl := get(t, url)
		if res.StatusCode != 200 || !strings.HasPrefix(pl, "#EXTM3U") {
			t.Fatalf("playlist: %d %q", res.StatusCode, pl)
		}
		for _, m := range segURI.FindAllStringSubmatch(pl, -1) {
			prefixes[m[1]] = true
		}
		targets[partTgt.FindStringSubmatch(pl)[1]] = true
		for _, s := range parseSegments(pl) {
			if s.uri == "gap.mp4" {
				continue
			}
			if old, ok := seen[s.uri]; ok && old != s {
				t.Fatalf("segment %s was %+v, now %+v in\n%s", s.uri, old, s, pl)
			}
			seen[s.uri] = s
		}
		last = pl
	}
	f.srv.mu.Lock()
	m := f.srv.muxers["room/cam"]
	f.srv.mu.Unlock()
	m.mu.Lock()
	outOfStep := m.warnedStep
	m.mu.Unlock()
	if outOfStep {
		t.Fatal("gohlslib cut segments elsewhere than the writer expected")
	}
	if len(prefixes) != 1 || len(targets) != 1 {
		t.Fatalf("muxer runs %v, part targets %v: want one of each", prefixes, targets)
	}
	if n := strings.Count(last, "#EXT-X-DISCONTINUITY\n"); n < 2 || len(extMap.FindAllString(last, -1)) < 3 {
		t.Fatalf("want >= 2 discontinuities with their own EXT-X-MAP in\n%s", last)
	}
	if !mediaSeq.MatchString(last) {
		t.Fatalf("no media sequence in\n%s", last)
	}

	// Each segment decodes with its init section, and the size the init
	// announces is the size of the pictures.
	widths := map[string]bool{}
	dir := t.TempDir()
	for _, s := range parseSegments(last) {
		if s.uri == "gap.mp4" {
			continue
		}
		_, init := get(t, f.base+"/hls/room/cam/"+s.init)
		res, seg := get(t, f.base+"/hls/room/cam/"+s.uri)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", s.uri, res.StatusCode)
		}
		file := filepath.Join(dir, s.uri)
		if err := os.WriteFile(file, append([]byte(init), seg...), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v", "-show_entries", "stream=width:frame=width",
			"-of", "csv=p=0", file).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v\n%s", s.uri, err, out)
		}
		lines := strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == '\n' || r == ' ' || r == '\r' })
		if len(lines) < 2 {
			t.Fatalf("%s: ffprobe says %q", s.uri, out)
		}
		for _, w := range lines {
			if w != lines[0] {
				t.Fatalf("%s with %s: widths %v; the init section does not describe the segment", s.uri, s.init, lines)
			}
		}
		widths[lines[0]] = true
	}
	if !widths["640"] || !widths["320"] {
		t.Fatalf("widths seen %v, want 640 and 320", widths)
	}
	t.Logf("checked %d segments, widths %v, last playlist:\n%s", len(parseSegments(last)), widths, last)

	// ffmpeg plays 6 s across the steps.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.Need(t, "ffmpeg"), "-hide_banner", "-nostdin", "-v", "info", "-rw_timeout", "5000000",
		"-i", f.base+"/hls/room/cam/index.m3u8", "-t", "6", "-vf", "showinfo", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	sizes := regexp.MustCompile(`s:(\d+x\d+)`).FindAllStringSubmatch(string(out), -1)
	got := map[string]int{}
	for _, m := range sizes {
		got[m[1]]++
	}
	if got["640x360"] == 0 || got["320x180"] == 0 {
		t.Fatalf("ffmpeg decoded frames of sizes %v, want both 640x360 and 320x180\n%.2000s", got, out)
	}
	t.Logf("ffmpeg decoded %v", got)
}

// TestHLSErrors: requests the muxer cannot answer get clear errors, and a
// blocking reload that is never satisfied in time gets the current
// playlist rather than an error.
func TestHLSErrors(t *testing.T) {
	f := start(t, Params{BlockTimeout: 500 * time.Millisecond})
	media := f.base + "/hls/room/cam/video1_stream.m3u8"
	if res, body := get(t, media); res.StatusCode != 200 {
		t.Fatalf("playlist: %d %s", res.StatusCode, body)
	}
	rec := httptestRecorder{}
	req, _ := http.NewRequest(http.MethodGet, "/hls/room/cam/gap.mp4", nil)
	if err := f.srv.Serve(&rec, req, "room/cam", "gap.mp4"); err != ErrGap || !IsNotFound(err) {
		t.Fatalf("gap.mp4: %v", err)
	}
	req, _ = http.NewRequest(http.MethodGet, "/x?_HLS_part=1", nil)
	if err := f.srv.Serve(&rec, req, "room/cam", "video1_stream.m3u8"); err != ErrBadRequest {
		t.Fatalf("_HLS_part without _HLS_msn: %v", err)
	}
	// The next segment but one plus one is more than the two ahead the
	// spec allows: 400.
	_, pl := get(t, media)
	next := 0
	for _, s := range parseSegments(pl) {
		if m := regexp.MustCompile(`_seg(\d+)\.mp4`).FindStringSubmatch(s.uri); m != nil {
			next, _ = strconv.Atoi(m[1])
		}
	}
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("/x?_HLS_msn=%d&_HLS_part=0", next+5), nil)
	if err := f.srv.Serve(&rec, req, "room/cam", "video1_stream.m3u8"); err != ErrBadRequest {
		t.Fatalf("msn far ahead: %v", err)
	}
	// The next segment's part 40 will not exist within 0.5 s: the answer
	// is the playlist as it is.
	start := time.Now()
	res, body := get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=40", media, next+1))
	if res.StatusCode != 200 || !strings.HasPrefix(body, "#EXTM3U") || time.Since(start) > 5*time.Second {
		t.Fatalf("blocking reload not satisfied: %d after %v: %q", res.StatusCode, time.Since(start), body)
	}
	// A client that gives up on a blocking request is not an error.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("/x?_HLS_msn=%d&_HLS_part=40", next+1), nil)
	if err := f.srv.Serve(&rec, req, "room/cam", "video1_stream.m3u8"); err != context.Canceled {
		t.Fatalf("cancelled request: %v", err)
	}
	// A part far beyond the preload hint is not found (no waiting).
	req, _ = http.NewRequest(http.MethodGet, "/x", nil)
	if err := f.srv.Serve(&rec, req, "room/cam", "abc_video1_part999999.mp4"); !IsNotFound(err) {
		t.Fatalf("far part: %v", err)
	}
}

type httptestRecorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *httptestRecorder) Header() http.Header {
	if r.h == nil {
		r.h = http.Header{}
	}
	return r.h
}
func (r *httptestRecorder) WriteHeader(c int)           { r.code = c }
func (r *httptestRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// TestPublisherReconnectKeepsThePlaylist: a publisher that drops and comes
// back within the grace period continues the same playlist (same muxer),
// and ffmpeg decodes across the break.
func TestPublisherReconnectKeepsThePlaylist(t *testing.T) {
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	f := startClip(t, Params{}, c)
	media := f.base + "/hls/room/cam/video1_stream.m3u8"
	if res, body := get(t, media); res.StatusCode != 200 {
		t.Fatalf("playlist: %d %s", res.StatusCode, body)
	}
	// End the clip publisher and publish again 1.5 s later.
	f.stop()
	time.Sleep(1500 * time.Millisecond)
	_, stop, err := c.Start(f.hub, "room/cam")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	prefixes := map[string]bool{}
	var last string
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		res, pl := get(t, media)
		if res.StatusCode != 200 {
			t.Fatalf("playlist after the publisher came back: %d %q", res.StatusCode, pl)
		}
		for _, m := range segURI.FindAllStringSubmatch(pl, -1) {
			prefixes[m[1]] = true
		}
		last = pl
	}
	if len(prefixes) != 1 {
		t.Fatalf("muxer runs %v: want the same one across the reconnect\n%s", prefixes, last)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	out, err := exec.CommandContext(ctx2, testenv.Need(t, "ffmpeg"), "-hide_banner", "-nostdin", "-v", "error", "-rw_timeout", "5000000",
		"-live_start_index", "0", "-i", f.base+"/hls/room/cam/index.m3u8", "-t", "8", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg across the reconnect: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Logf("ffmpeg said: %.1000s", s)
	}
}
