package rtmp_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtmp"
	"github.com/livegate/livegate/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, env *ingesttest.Env, p rtmp.Params) *rtmp.Server {
	t.Helper()
	p.Hub, p.Addr, p.Logger = env.Hub, "127.0.0.1:0", ingesttest.Logger()
	return ingesttest.Serve(t, rtmp.New, p)
}

// TestRTMPToWHEP: ffmpeg publishes a test pattern (H.264 + AAC) over RTMP;
// a pion WHEP viewer receives H.264 that decodes and, through the
// AAC->Opus transcoder, Opus audio.
func TestRTMPToWHEP(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	env := ingesttest.NewEnv(t)
	var gotToken string
	s := start(t, env, rtmp.Params{Authorize: func(room, name, token, ip string) (string, error) {
		gotToken = token
		if room != "room" || name != "cam" || ip != "127.0.0.1" {
			return "", fmt.Errorf("unexpected %s/%s from %s", room, name, ip)
		}
		return "", nil
	}})
	url := fmt.Sprintf("rtmp://%s/room/cam?token=abc", s.Addr())
	stop := testenv.StartFFmpeg(t, append(testenv.TestPattern(20), "-f", "flv", "-flvflags", "no_duration_filesize", url)...)
	defer stop()
	env.ExpectTestPattern(t, "room/cam")
	if gotToken != "abc" {
		t.Fatalf("token %q reached Authorize, want abc", gotToken)
	}
}

// TestRTMPVideoOnlyWithoutFFmpeg: without a transcoder an AAC publisher's
// stream is video-only.
func TestRTMPVideoOnlyWithoutFFmpeg(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtmp.Params{FFmpeg: "-"})
	stop := testenv.StartFFmpeg(t, append(testenv.TestPattern(10), "-f", "flv", fmt.Sprintf("rtmp://%s/room/cam", s.Addr()))...)
	defer stop()
	st := env.WaitLive(t, "room/cam", 15*time.Second)
	if n := len(st.Tracks()); n != 1 {
		t.Fatalf("%d tracks, want video only", n)
	}
	v := env.View(t, "room/cam")
	v.WaitMedia(t, 15, 0, 15*time.Second)
}

// TestRTMPRefused: a refused publish (bad token, bad path, a path already
// being published) or a play never reaches the hub, and the client is told
// why with an RTMP error status: ffmpeg prints the reason and fails at
// once instead of reporting a broken pipe.
func TestRTMPRefused(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtmp.Params{Authorize: func(_, _, token, _ string) (string, error) {
		if token != "good" {
			return "", errors.New("token not accepted")
		}
		return "", nil
	}})
	base := "rtmp://" + s.Addr().String()
	run := func(args ...string) (string, error) { return testenv.RunFFmpeg(t, 20*time.Second, args...) }
	publish := func(u string) (string, error) {
		return run(append(testenv.TestPattern(2), "-f", "flv", base+u)...)
	}
	for _, c := range []struct{ url, reason string }{
		{"/room/cam?token=bad", "Server error: token not accepted"},
		{"/room/cam", "Server error: token not accepted"},
		{"/room/c%20am?token=good", "is not ROOM/NAME"},
		{"/room/a/b?token=good", "is not ROOM/NAME"},
	} {
		began := time.Now()
		out, err := publish(c.url)
		if err == nil {
			t.Errorf("%s: ffmpeg succeeded; want the publish refused\n%s", c.url, out)
		}
		if !strings.Contains(out, c.reason) || strings.Contains(strings.ToLower(out), "broken pipe") {
			t.Errorf("%s: ffmpeg said %q, want the reason %q and no broken pipe", c.url, out, c.reason)
		}
		t.Logf("%s: ffmpeg said %q", c.url, strings.TrimSpace(out))
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("%s: refused after %v, want at once", c.url, d)
		}
		if len(env.Hub.Streams()) != 0 {
			t.Fatalf("%s: a stream went live", c.url)
		}
	}

	// Reading over RTMP is not offered: the player is told so.
	if out, err := run("-i", base+"/room/cam?token=good", "-t", "1", "-f", "null", "-"); err == nil ||
		!strings.Contains(out, "playing over RTMP is not supported") {
		t.Errorf("play: err %v, ffmpeg said %q", err, out)
	}

	// A second publisher for a live path is told it is taken.
	stop := testenv.StartFFmpeg(t, append(testenv.TestPattern(20), "-f", "flv", base+"/room/busy?token=good")...)
	defer stop()
	env.WaitLive(t, "room/busy", 15*time.Second)
	out, err := publish("/room/busy?token=good")
	if err == nil || !strings.Contains(out, "Server error: stream is already being published: room/busy") {
		t.Errorf("busy path: err %v, ffmpeg said %q", err, out)
	}
	t.Logf("busy path: ffmpeg said %q", strings.TrimSpace(out))
}
