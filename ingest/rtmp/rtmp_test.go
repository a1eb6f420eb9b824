package rtmp_test

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtmp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, env *ingesttest.Env, p rtmp.Params) *rtmp.Server {
	t.Helper()
	p.Hub, p.Addr, p.Logger = env.Hub, "127.0.0.1:0", ingesttest.Logger()
	s, err := rtmp.New(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestRTMPToWHEP: ffmpeg publishes a test pattern (H.264 + AAC) over RTMP;
// a pion WHEP viewer receives H.264 that decodes and, through the
// AAC->Opus transcoder, Opus audio.
func TestRTMPToWHEP(t *testing.T) {
	ingesttest.Need(t, "ffmpeg")
	env := ingesttest.NewEnv(t)
	var gotToken string
	s := start(t, env, rtmp.Params{Authorize: func(room, name, token, ip string) error {
		gotToken = token
		if room != "room" || name != "cam" || ip != "127.0.0.1" {
			return fmt.Errorf("unexpected %s/%s from %s", room, name, ip)
		}
		return nil
	}})
	url := fmt.Sprintf("rtmp://%s/room/cam?token=abc", s.Addr())
	stop := ingesttest.FFmpeg(t, append(ingesttest.TestPattern(20), "-f", "flv", "-flvflags", "no_duration_filesize", url)...)
	defer stop()
	st := env.WaitLive(t, "room/cam", 15*time.Second)
	if gotToken != "abc" {
		t.Fatalf("token %q reached Authorize, want abc", gotToken)
	}
	if n := len(st.Tracks()); n != 2 {
		t.Fatalf("%d tracks, want video + Opus", n)
	}
	v := env.View(t, "room/cam")
	frames, audio := v.WaitMedia(t, 60, 50, 20*time.Second)
	n, size := ingesttest.Decode(t, frames)
	if size != "640x360" || n < 30 {
		t.Fatalf("decoded %d frames of %s, want >= 30 of 640x360", n, size)
	}
	t.Logf("viewer: %d video frames (%d decoded), %d Opus packets", len(frames), n, audio)
}

// TestRTMPVideoOnlyWithoutFFmpeg: without a transcoder an AAC publisher's
// stream is video-only.
func TestRTMPVideoOnlyWithoutFFmpeg(t *testing.T) {
	ingesttest.Need(t, "ffmpeg")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtmp.Params{FFmpeg: "-"})
	stop := ingesttest.FFmpeg(t, append(ingesttest.TestPattern(10), "-f", "flv", fmt.Sprintf("rtmp://%s/room/cam", s.Addr()))...)
	defer stop()
	st := env.WaitLive(t, "room/cam", 15*time.Second)
	if n := len(st.Tracks()); n != 1 {
		t.Fatalf("%d tracks, want video only", n)
	}
	v := env.View(t, "room/cam")
	v.WaitMedia(t, 15, 0, 15*time.Second)
}

// TestRTMPRefused: a bad path or a refused token never reaches the hub.
func TestRTMPRefused(t *testing.T) {
	ffmpeg := ingesttest.Need(t, "ffmpeg")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtmp.Params{Authorize: func(_, _, token, _ string) error {
		if token != "good" {
			return errors.New("bad token")
		}
		return nil
	}})
	for _, u := range []string{"/room/cam?token=bad", "/room/cam", "/room/c%20am?token=good", "/onlyroom"} {
		out, err := exec.Command(ffmpeg, append(append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"},
			ingesttest.TestPattern(2)...), "-f", "flv", "rtmp://"+s.Addr().String()+u)...).CombinedOutput()
		if err == nil {
			t.Errorf("%s: ffmpeg succeeded; want the publish refused\n%s", u, out)
		}
		if len(env.Hub.Streams()) != 0 {
			t.Fatalf("%s: a stream went live", u)
		}
	}
}
