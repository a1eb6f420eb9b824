package rtmp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/egress/rtmp/rtmptest"
	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testLogger() *slog.Logger { return testenv.Logger(slog.LevelError) }

// fixture publishes the test clip at room/cam in real time.
type fixture struct {
	hub *relay.Hub
	fl  *frames.Layer
}

func startClip(t *testing.T) *fixture {
	t.Helper()
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	return startPlaying(t, c)
}

// startPlaying publishes c at room/cam in real time.
func startPlaying(t *testing.T, c *framestest.Clip) *fixture {
	t.Helper()
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 2})
	_, stop, err := c.Start(hub, "room/cam")
	if err != nil {
		hub.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		hub.Close()
	})
	return &fixture{hub: hub, fl: frames.New(frames.Params{Logger: testLogger()})}
}

func (f *fixture) manager(t *testing.T, p Params) *Manager {
	p.Hub, p.Frames, p.Logger = f.hub, f.fl, testLogger()
	if p.MinBackoff == 0 {
		p.MinBackoff, p.MaxBackoff = 200*time.Millisecond, time.Second
	}
	m := New(p)
	t.Cleanup(m.Close)
	return m
}

func waitState(t *testing.T, m *Manager, id, state string, timeout time.Duration) Info {
	t.Helper()
	var in Info
	testenv.Poll(t, timeout, func() string {
		var err error
		if in, err = m.Get(id); err != nil {
			t.Fatal(err)
		}
		if in.State == state {
			return ""
		}
		return fmt.Sprintf("job %s: state %s (last error %q), want %s", id, in.State, in.LastError, state)
	})
	return in
}

// probe reads url for a few seconds with ffprobe and checks H.264 + AAC
// with increasing timestamps.
func probe(t *testing.T, url string, wantAudio bool) {
	t.Helper()
	ffprobe := testenv.Need(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
		"-show_entries", "stream=index,codec_type,codec_name,width,height,sample_rate:packet=stream_index,pts_time",
		"-read_intervals", "%+3", "-of", "csv=p=1", url).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", url, err, out)
	}
	streams := map[string]string{} // index -> codec
	last := map[string]float64{}
	count := map[string]int{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Split(strings.TrimSpace(l), ",")
		switch {
		case len(f) >= 4 && f[0] == "stream":
			streams[f[1]] = f[2]
		case len(f) == 3 && f[0] == "packet":
			pts, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				continue
			}
			if c := count[f[1]]; c > 0 && pts <= last[f[1]] {
				t.Fatalf("stream %s: pts %.3f after %.3f", f[1], pts, last[f[1]])
			}
			last[f[1]] = pts
			count[f[1]]++
		}
	}
	var codecs []string
	for idx, c := range streams {
		codecs = append(codecs, c)
		if count[idx] < 10 {
			t.Fatalf("stream %s (%s): only %d packets in 3 s\n%s", idx, c, count[idx], out)
		}
	}
	all := strings.Join(codecs, ",")
	if !strings.Contains(all, "h264") || wantAudio != strings.Contains(all, "aac") {
		t.Fatalf("codecs %q (audio wanted: %v)", all, wantAudio)
	}
}

func TestPushToNginxAndRecover(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	ng := rtmptest.StartNginx(t)
	f := startClip(t)
	m := f.manager(t, Params{})
	in, err := m.Start("room/cam", "rtmp://"+ng.Addr()+"/live/cam", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(in.URL, "/live/****") {
		t.Fatalf("stream key not masked: %s", in.URL)
	}
	waitState(t, m, in.ID, StateLive, 20*time.Second)
	probe(t, "rtmp://"+ng.Addr()+"/live/cam", true)
	if in, _ := m.Get(in.ID); in.BytesSent < 10000 {
		t.Fatalf("bytes sent %d", in.BytesSent)
	}

	// The CDN restarts: the job notices, retries and is live again.
	ng.Stop()
	if down := waitState(t, m, in.ID, StateRetrying, 15*time.Second); down.LastError == "" {
		t.Fatalf("retrying without an error: %+v", down)
	}
	ng.Start()
	got := waitState(t, m, in.ID, StateLive, 20*time.Second)
	if got.Reconnects < 1 || got.LastError != "" {
		t.Fatalf("after recovery: %+v, want reconnects >= 1 and the error cleared", got)
	}
	probe(t, "rtmp://"+ng.Addr()+"/live/cam", true)

	if _, err := m.Stop(in.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(in.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stopped job still listed: %v", err)
	}
}

func TestTenJobsOneTranscode(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	ng := rtmptest.StartNginx(t)
	f := startClip(t)
	m := f.manager(t, Params{})
	var ids []string
	for i := range 10 {
		in, err := m.Start("room/cam", fmt.Sprintf("rtmp://%s/live/k%d", ng.Addr(), i), false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	for _, id := range ids {
		waitState(t, m, id, StateLive, 20*time.Second)
	}
	if n := m.Transcodes(); n != 1 {
		t.Fatalf("%d transcoders for one stream, want 1", n)
	}
	probe(t, "rtmp://"+ng.Addr()+"/live/k7", true)
	for _, id := range ids {
		if _, err := m.Stop(id); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.fl.Active(); n != 0 {
		t.Fatalf("%d depacketizers still running after every job stopped", n)
	}
}

func TestWithoutFFmpeg(t *testing.T) {
	f := startClip(t)
	m := f.manager(t, Params{FFmpeg: "-"})
	if _, err := m.Start("room/cam", "rtmp://127.0.0.1:1/live/x", false); !errors.Is(err, ErrNoTranscoder) {
		t.Fatalf("err %v, want ErrNoTranscoder", err)
	}
	in, err := m.Start("room/cam", "rtmp://127.0.0.1:1/live/x", true)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, in.ID, StateRetrying, 10*time.Second)
	for _, bad := range []string{"http://x/y", "rtmp://", "rtmp://host"} {
		if _, err := m.Start("room/cam", bad, true); !errors.Is(err, ErrBadURL) {
			t.Fatalf("%q: err %v", bad, err)
		}
	}
	if _, err := m.Start("room/none", "rtmp://127.0.0.1:1/live/x", true); !errors.Is(err, ErrNoStream) {
		t.Fatalf("unknown stream: %v", err)
	}
}

func TestVideoOnlyOverRTMPSAndRules(t *testing.T) {
	ng := rtmptest.StartNginx(t)
	// A TLS terminator in front of nginx: rtmps:// as CDNs offer it.
	cert, pool := testenv.LoopbackCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := net.Dial("tcp", ng.Addr())
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	f := startClip(t)
	// The rule matches streams that start after the manager: room/cam is
	// already live, so start it by API and check the rule on a second one.
	m := f.manager(t, Params{TLS: &tls.Config{RootCAs: pool, ServerName: "localhost"}, FFmpeg: "-",
		Rules: []Rule{{Match: "room/*", URL: "rtmps://127.0.0.1:" + port + "/live/{name}-auto", VideoOnly: true}}})
	defer m.Close() // before the TLS proxy's connections are waited for
	in, err := m.Start("room/cam", "rtmps://127.0.0.1:"+port+"/live/cam", true)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, in.ID, StateLive, 20*time.Second)
	probe(t, "rtmp://"+ng.Addr()+"/live/cam", false)

	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	_, stop, err := c.Start(f.hub, "room/second")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var auto *Info
		for _, j := range m.List() {
			if j.Rule && j.Stream == "room/second" {
				auto = &j
			}
		}
		if auto != nil && auto.State == StateLive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rule job not live: %+v", m.List())
		}
		time.Sleep(100 * time.Millisecond)
	}
	probe(t, "rtmp://"+ng.Addr()+"/live/second-auto", false)
}

func TestRules(t *testing.T) {
	if err := ValidateRules([]Rule{{Match: "room/*", URL: "rtmp://cdn/live/{name}"}}); err != nil {
		t.Fatal(err)
	}
	if err := ValidateRules([]Rule{{Match: "[", URL: "rtmp://cdn/live/x"}}); err == nil {
		t.Fatal("bad pattern accepted")
	}
	if err := ValidateRules([]Rule{{Match: "*/*", URL: "http://cdn/x"}}); err == nil {
		t.Fatal("bad url accepted")
	}
	if got := expand("rtmp://h/{room}/{name}?p={path}", "a/b"); got != "rtmp://h/a/b?p=a/b" {
		t.Fatal(got)
	}
}

func TestParseRule(t *testing.T) {
	r, err := ParseRule("show/*=rtmps://live.example.com/app/{name}|video-only")
	if err != nil || r.Match != "show/*" || r.URL != "rtmps://live.example.com/app/{name}" || !r.VideoOnly {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"show/*", "show/*=http://x/y", "[=rtmp://h/a/b", "a/*=rtmp://h/a/b|audio"} {
		if _, err := ParseRule(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
