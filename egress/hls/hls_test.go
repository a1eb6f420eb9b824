package hls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testLogger() *slog.Logger { return testenv.Logger(slog.LevelError) }

type fixture struct {
	hub  *relay.Hub
	srv  *Server
	base string
	http *http.Server
	pub  *relay.Publication
	stop func() // ends the clip's publication
}

// start publishes the clip at room/cam and serves HLS on 127.0.0.1.
func start(t *testing.T, p Params) *fixture {
	t.Helper()
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	return startClip(t, p, c)
}

// startClip publishes c at room/cam and serves HLS on 127.0.0.1.
func startClip(t *testing.T, p Params, c *framestest.Clip) *fixture {
	t.Helper()
	f := &fixture{hub: relay.NewHub(relay.Params{Logger: testLogger(), Workers: 2})}
	var err error
	if f.pub, f.stop, err = c.Start(f.hub, "room/cam"); err != nil {
		t.Fatal(err)
	}
	p.Hub, p.Logger = f.hub, testLogger()
	if p.Frames == nil {
		p.Frames = frames.New(frames.Params{Logger: testLogger()})
	}
	f.srv = New(p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.base = "http://" + ln.Addr().String()
	f.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/hls/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		if err := f.srv.Serve(w, r, parts[0]+"/"+parts[1], parts[2]); err != nil {
			code := http.StatusServiceUnavailable
			if IsNotFound(err) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
		}
	})}
	go func() { _ = f.http.Serve(ln) }()
	t.Cleanup(func() {
		_ = f.http.Close()
		f.srv.Close()
		f.stop()
		f.hub.Close()
	})
	return f
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestPlaylistSegmentsAndCacheHeaders(t *testing.T) {
	f := start(t, Params{})
	res, body := get(t, f.base+"/hls/room/cam/index.m3u8")
	if res.StatusCode != 200 || !strings.Contains(body, "#EXTM3U") {
		t.Fatalf("index.m3u8: %d %q", res.StatusCode, body)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=1" {
		t.Fatalf("multivariant Cache-Control %q", cc)
	}
	if !strings.Contains(body, "avc1.") || !strings.Contains(body, "opus") {
		t.Fatalf("codecs missing in %q", body)
	}
	var media string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasSuffix(l, ".m3u8") && !strings.HasPrefix(l, "#") {
			media = l
		}
	}
	if media == "" {
		t.Fatalf("no media playlist in %q", body)
	}
	res, pl := get(t, f.base+"/hls/room/cam/"+media)
	if res.StatusCode != 200 || !strings.Contains(pl, "#EXT-X-PART") || !strings.Contains(pl, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES") {
		t.Fatalf("media playlist: %d %q", res.StatusCode, pl)
	}
	var init, part string
	for _, l := range strings.Split(pl, "\n") {
		if strings.HasPrefix(l, "#EXT-X-MAP:URI=\"") {
			init = strings.TrimSuffix(strings.TrimPrefix(l, "#EXT-X-MAP:URI=\""), "\"")
		}
		if strings.HasPrefix(l, "#EXT-X-PART:") && strings.Contains(l, "URI=\"") {
			part = strings.SplitN(strings.SplitN(l, "URI=\"", 2)[1], "\"", 2)[0]
		}
	}
	for _, file := range []string{init, part} {
		res, b := get(t, f.base+"/hls/room/cam/"+file)
		if res.StatusCode != 200 || len(b) == 0 {
			t.Fatalf("%s: %d, %d bytes", file, res.StatusCode, len(b))
		}
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Fatalf("%s Cache-Control %q", file, cc)
		}
	}
	// A blocking reload for the next part is answered when it exists.
	msn := strings.Count(pl, "#EXTINF") // next segment's number, roughly
	_ = msn
	res, _ = get(t, f.base+"/hls/room/cam/"+media+"?_HLS_msn=1&_HLS_part=0")
	if res.StatusCode == 200 && res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("blocking reload Cache-Control %q", res.Header.Get("Cache-Control"))
	}
	if res, _ := get(t, f.base+"/hls/room/nobody/index.m3u8"); res.StatusCode != 404 {
		t.Fatalf("unknown stream: %d", res.StatusCode)
	}
	if res, _ := get(t, f.base+"/hls/room/cam/nope_seg9.mp4"); res.StatusCode != 404 {
		t.Fatalf("unknown file: %d", res.StatusCode)
	}
}

func TestFFprobeReadsHLS(t *testing.T) {
	ffprobe := testenv.Need(t, "ffprobe")
	ffmpeg := testenv.Need(t, "ffmpeg")
	f := start(t, Params{})
	url := f.base + "/hls/room/cam/index.m3u8"
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "5000000",
		"-show_entries", "stream=codec_type,codec_name,width,height,sample_rate,channels",
		"-of", "compact", url).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "codec_name=h264") || !strings.Contains(s, "codec_name=opus") || !strings.Contains(s, "width=") {
		t.Fatalf("ffprobe sees %q", s)
	}
	// Decode 4 s: every segment ffmpeg fetches must be decodable.
	out, err = exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-rw_timeout", "5000000",
		"-i", url, "-t", "4", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg decode: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "" {
		t.Logf("ffmpeg said: %s", out)
	}
}

// TestAACRendition: with the shared transcoder the audio rendition is AAC
// (Safari and iOS play it) and decodes; the transcoder stops with the
// muxer.
func TestAACRendition(t *testing.T) {
	ffprobe := testenv.Need(t, "ffprobe")
	testenv.Need(t, "ffmpeg")
	fl := frames.New(frames.Params{Logger: testLogger()})
	tc := aac.New(aac.Params{Frames: fl, Logger: testLogger()})
	f := start(t, Params{Frames: fl, AAC: tc, IdleTimeout: 2 * time.Second})
	_, body := get(t, f.base+"/hls/room/cam/index.m3u8")
	if !strings.Contains(body, "mp4a.40.2") || strings.Contains(body, "opus") {
		t.Fatalf("multivariant playlist: %q", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "5000000",
		"-select_streams", "a", "-show_entries", "stream=codec_name,sample_rate:packet=pts_time", "-read_intervals", "%+2",
		"-of", "compact", f.base+"/hls/room/cam/index.m3u8").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=aac") || strings.Count(string(out), "packet|") < 40 {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	if n := tc.Started(); n != 1 {
		t.Fatalf("%d transcoders started, want 1", n)
	}
	testenv.Poll(t, 10*time.Second, func() string {
		if f.srv.Muxers() == 0 && f.srv.p.Frames.Active() == 0 {
			return ""
		}
		return fmt.Sprintf("after idle: %d muxers, %d depacketisers (the transcoder's included)", f.srv.Muxers(), f.srv.p.Frames.Active())
	})
}

func TestIdleMuxerStops(t *testing.T) {
	f := start(t, Params{IdleTimeout: 400 * time.Millisecond})
	if res, _ := get(t, f.base+"/hls/room/cam/index.m3u8"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if f.srv.Muxers() != 1 {
		t.Fatalf("muxers = %d", f.srv.Muxers())
	}
	testenv.WaitFor(t, 5*time.Second, "the idle muxer to stop", func() bool { return f.srv.Muxers() == 0 })
	if n := f.srv.p.Frames.Active(); n != 0 {
		t.Fatalf("%d depacketizers still running after the muxer stopped", n)
	}
	// The next request starts it again.
	if res, _ := get(t, f.base+"/hls/room/cam/index.m3u8"); res.StatusCode != 200 {
		t.Fatalf("restart: status %d", res.StatusCode)
	}
}

func TestStreamWithoutH264(t *testing.T) {
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 1})
	defer hub.Close()
	if _, err := framestest.Publish(hub, "a/b"); err != nil {
		t.Fatal(err)
	}
	s := New(Params{Hub: hub, Frames: frames.New(frames.Params{}), Logger: testLogger()})
	defer s.Close()
	if _, err := s.get("x/y"); !errors.Is(err, ErrNoStream) {
		t.Fatalf("err %v", err)
	}
}
