package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/egress/rtmp/rtmptest"
)

// compositeState is GET /api/v1/rooms/ROOM/composite.
type compositeState struct {
	Stream          string    `json:"stream"`
	State           string    `json:"state"`
	LayoutChanges   int       `json:"layoutChanges"`
	LayoutChangedAt time.Time `json:"layoutChangedAt"`
	EncoderStarts   int       `json:"encoderStarts"`
	LastError       string    `json:"lastError"`
	Tiles           []struct {
		Host  string
		Video bool
		Audio bool
		Rect  struct{ X, Y, W, H int }
	} `json:"tiles"`
}

func (g *testGateway) compositeAPI(t *testing.T, method, room, body string) (int, compositeState, string) {
	t.Helper()
	contentType := ""
	if body != "" {
		contentType = "application/json"
	}
	res, text := fetch(t, method, g.base+"/api/v1/rooms/"+room+"/composite", body, "Content-Type", contentType)
	var st compositeState
	_ = json.Unmarshal([]byte(text), &st)
	return res.StatusCode, st, text
}

// TestCompositeHLSAndRTMPPush: two hosts in a room, a composite asked for
// by API at 960x540. Its HLS decodes in ffprobe as H.264 of that size with
// audio; it is pushed to a real nginx-rtmp. A third host joins, then the
// first leaves: the layout follows within a second each time while the
// push keeps its one connection and the encoder is never restarted; a
// reader on nginx sees timestamps run on without a gap. DELETE ends it.
func TestCompositeHLSAndRTMPPush(t *testing.T) {
	ffprobe := needProgram(t, "ffprobe")
	needProgram(t, "ffmpeg")
	ng := rtmptest.StartNginx(t)
	g := startGateway(t, func(c *Config) { c.HLS = true })
	alice := g.playing(t, "show/alice")
	g.playing(t, "show/bob")
	code, st, body := g.compositeAPI(t, "POST", "show", `{"width":960,"height":540,"fps":25}`)
	if code != http.StatusCreated || st.Stream != "show/composite" {
		t.Fatalf("POST composite: %d %s", code, body)
	}
	waitFor(t, 20*time.Second, "composite live with two tiles", func() bool {
		_, st, _ := g.compositeAPI(t, "GET", "show", "")
		return st.State == "live" && len(st.Tiles) == 2 && st.Tiles[0].Video && st.Tiles[1].Video
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
		"-show_entries", "stream=codec_type,codec_name,width,height", "-of", "compact", g.base+"/hls/show/composite/index.m3u8").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=h264") || !strings.Contains(string(out), "width=960|height=540") ||
		!strings.Contains(string(out), "codec_type=audio") {
		t.Fatalf("ffprobe of the composite's HLS: %v\n%s", err, out)
	}
	t.Logf("HLS: %s", strings.TrimSpace(string(out)))

	res, err := httpClient.Post(g.base+"/api/v1/egress", "application/json",
		strings.NewReader(`{"stream":"show/composite","url":"rtmp://`+ng.Addr()+`/live/show"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/egress: %d", res.StatusCode)
	}
	waitFor(t, 20*time.Second, "push live", func() bool {
		jobs := g.egressJobs(t)
		return len(jobs) == 1 && jobs[0].State == "live"
	})
	// A reader on nginx across the join: video packet times, one
	// connection.
	probe := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
		"-select_streams", "v", "-show_entries", "packet=pts_time", "-read_intervals", "%+12", "-of", "csv=p=0",
		"rtmp://"+ng.Addr()+"/live/show")
	var probeOut bytes.Buffer
	probe.Stdout = &probeOut
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	_, before, _ := g.compositeAPI(t, "GET", "show", "")
	joined := time.Now()
	g.playing(t, "show/carol")
	var after compositeState
	waitFor(t, 5*time.Second, "three tiles", func() bool {
		_, after, _ = g.compositeAPI(t, "GET", "show", "")
		return len(after.Tiles) == 3
	})
	lag := after.LayoutChangedAt.Sub(joined)
	t.Logf("layout changed %v after the third host's WHIP answer", lag)
	if after.LayoutChanges <= before.LayoutChanges || lag > time.Second {
		t.Errorf("layout followed the join after %v (changes %d -> %d)", lag, before.LayoutChanges, after.LayoutChanges)
	}
	// A host leaves: its tile goes within a second, the output runs on.
	time.Sleep(2 * time.Second)
	left := time.Now()
	alice.leave()
	waitFor(t, 5*time.Second, "two tiles after alice left", func() bool {
		_, after, _ = g.compositeAPI(t, "GET", "show", "")
		return len(after.Tiles) == 2
	})
	lag = after.LayoutChangedAt.Sub(left)
	t.Logf("layout changed %v after the host left", lag)
	if lag > time.Second {
		t.Errorf("layout followed the leave after %v", lag)
	}
	if err := probe.Wait(); err != nil {
		t.Fatalf("ffprobe from nginx-rtmp: %v", err)
	}
	var pts []float64
	for _, l := range strings.Fields(probeOut.String()) {
		if v, err := strconv.ParseFloat(strings.Trim(l, ","), 64); err == nil {
			pts = append(pts, v)
		}
	}
	if len(pts) < 150 {
		t.Fatalf("only %d video packets read from nginx over 12 s", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		if d := pts[i] - pts[i-1]; d <= 0 || d > 0.5 {
			t.Errorf("video timestamps jump %.3f -> %.3f on nginx", pts[i-1], pts[i])
			break
		}
	}
	jobs := g.egressJobs(t)
	_, final, _ := g.compositeAPI(t, "GET", "show", "")
	if len(jobs) != 1 || jobs[0].Reconnects != 0 || jobs[0].State != "live" {
		t.Errorf("push after the layout change: %+v", jobs)
	}
	if final.EncoderStarts != 1 {
		t.Errorf("encoder started %d times (%s)", final.EncoderStarts, final.LastError)
	}
	t.Logf("nginx reader: %d video packets, %.2f-%.2f s; push reconnects %d; encoder starts %d",
		len(pts), pts[0], pts[len(pts)-1], jobs[0].Reconnects, final.EncoderStarts)

	if code, _, body := g.compositeAPI(t, "DELETE", "show", ""); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, st, _ := g.compositeAPI(t, "GET", "show", ""); code != http.StatusOK || st.State != "none" {
		t.Fatalf("GET after DELETE: %d %q", code, st.State)
	}
}

// TestCompositeAPIErrors: bad settings, a second POST with other sizes,
// and a gateway without ffmpeg answer with clear errors.
func TestCompositeAPIErrors(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.FFmpeg = "-" })
	code, _, body := g.compositeAPI(t, "POST", "show", `{}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"no_ffmpeg"`) || !strings.Contains(body, "install ffmpeg") {
		t.Fatalf("without ffmpeg: %d %s", code, body)
	}
	if code, _, body := g.compositeAPI(t, "POST", "show", `{"width":333,"height":200}`); code != http.StatusBadRequest {
		t.Fatalf("odd width: %d %s", code, body)
	}
	if code, _, body := g.compositeAPI(t, "POST", "show", `{"layout":"mosaic"}`); code != http.StatusBadRequest {
		t.Fatalf("unknown layout: %d %s", code, body)
	}
	if code, st, _ := g.compositeAPI(t, "GET", "show", ""); code != http.StatusOK || st.State != "none" {
		t.Fatalf("GET of no composite: %d %q", code, st.State)
	}
	if code, _, _ := g.compositeAPI(t, "DELETE", "show", ""); code != http.StatusNotFound {
		t.Fatalf("DELETE of no composite: %d", code)
	}
}

// TestBrowserCompositeChromeHost: a Chromium host (fake camera and
// microphone) and a clip publisher in one room; a WHEP viewer of the
// composite gets H.264 of the requested size that ffmpeg decodes, and
// audio; both tiles show video.
func TestBrowserCompositeChromeHost(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	needProgram(t, "ffmpeg")
	ffprobe := needProgram(t, "ffprobe")
	g := startGateway(t, nil)
	h := g.startChromeHost(t, b, "duo/chrome", chromeHostOpts{Width: 640, Height: 360})
	h.waitLive(t, 30*time.Second)
	g.playing(t, "duo/clip")
	if code, _, body := g.compositeAPI(t, "POST", "duo", `{"width":640,"height":360,"fps":20}`); code != http.StatusCreated {
		t.Fatalf("POST composite: %d %s", code, body)
	}
	waitFor(t, 30*time.Second, "composite live with two video tiles", func() bool {
		_, st, _ := g.compositeAPI(t, "GET", "duo", "")
		return st.State == "live" && len(st.Tiles) == 2 && st.Tiles[0].Video && st.Tiles[1].Video
	})
	v := g.view(t, "duo/composite")
	time.Sleep(4 * time.Second)
	frames, audio, _ := v.snapshot()
	if len(frames) < 30 || len(audio) < 50 {
		t.Fatalf("WHEP viewer of the composite got %d video frames and %d audio packets in 4 s", len(frames), len(audio))
	}
	var annexB bytes.Buffer
	for _, f := range frames {
		for _, n := range f.nalus {
			annexB.Write([]byte{0, 0, 0, 1})
			annexB.Write(n)
		}
	}
	file := filepath.Join(t.TempDir(), "composite.h264")
	if err := os.WriteFile(file, annexB.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffprobe, "-hide_banner", "-v", "error", "-count_frames", "-select_streams", "v",
		"-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "640,360,") {
		t.Fatalf("ffprobe of what the WHEP viewer got: %v %s", err, out)
	}
	n, _ := strconv.Atoi(strings.Split(strings.TrimSpace(string(out)), ",")[2])
	if n < 30 {
		t.Errorf("only %d frames decode", n)
	}
	t.Logf("WHEP viewer: %d frames (%s decoded), %d audio packets; browser host %+v", len(frames), fmt.Sprint(n), len(audio), h.stats(t))

	// The host page says the room is composited, and stops saying so when
	// it is not; the composite is not listed as a host.
	tab, closeTab := b.tab(t, "host page")
	defer closeTab()
	b.navigate(t, tab, g.base+"/host/duo?identity=ann&autostart=0")
	line := waitPage(t, tab, 20*time.Second, "host page composite line",
		`({state: document.getElementById('composite-state').dataset.state || '', text: document.getElementById('composite-state').textContent,
		  tiles: [...document.querySelectorAll('#grid [data-path]')].map(e => e.dataset.path)})`,
		func(v struct {
			State, Text string
			Tiles       []string
		}) (bool, error) {
			return v.State == "live", nil
		})
	t.Logf("host page: %q", line.Text)
	if !strings.Contains(line.Text, "duo/composite") || !strings.Contains(line.Text, "2 hosts") {
		t.Errorf("host page composite line: %q", line.Text)
	}
	for _, p := range line.Tiles {
		if strings.HasSuffix(p, "/composite") {
			t.Errorf("the composite is shown as a host tile: %v", line.Tiles)
		}
	}
	if code, _, body := g.compositeAPI(t, "DELETE", "duo", ""); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	waitPage(t, tab, 10*time.Second, "host page says not composited",
		`document.getElementById('composite-state').dataset.state || ''`,
		func(s string) (bool, error) { return s == "none", nil })
	h.stop(t)
}
