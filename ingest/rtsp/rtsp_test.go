package rtsp_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtsp"
	"github.com/livegate/livegate/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, env *ingesttest.Env, p rtsp.Params) *rtsp.Server {
	t.Helper()
	p.Hub, p.Addr, p.Logger = env.Hub, "127.0.0.1:0", ingesttest.Logger()
	return ingesttest.Serve(t, rtsp.New, p)
}

// TestRTSPPublishToWHEPAndRead: ffmpeg publishes a test pattern over RTSP
// (ANNOUNCE/RECORD, H.264 + AAC); a pion WHEP viewer receives decodable
// H.264 and Opus; ffprobe reads the same path back over RTSP and finds
// H.264 640x360 and Opus.
func TestRTSPPublishToWHEPAndRead(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{})
	base := fmt.Sprintf("rtsp://%s/room/cam", s.Addr())
	stop := testenv.StartFFmpeg(t, append(testenv.TestPattern(20), "-f", "rtsp", "-rtsp_transport", "tcp", base)...)
	defer stop()
	env.ExpectTestPattern(t, "room/cam")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rtsp_transport", "tcp",
		"-show_entries", "stream=codec_name,width,height", "-of", "compact", base).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=h264|width=640|height=360") ||
		!strings.Contains(string(out), "codec_name=opus") {
		t.Fatalf("ffprobe RTSP: %v\n%s", err, out)
	}
}

// TestRTSPRefused: refused tokens and unknown paths.
func TestRTSPRefused(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{Authorize: func(_, _, token, _ string) (string, error) {
		if token != "good" {
			return "", fmt.Errorf("bad token %q", token)
		}
		return "", nil
	}})
	out, err := testenv.RunFFmpeg(t, time.Minute, append(testenv.TestPattern(2), "-f", "rtsp", "-rtsp_transport", "tcp",
		fmt.Sprintf("rtsp://%s/room/cam?token=bad", s.Addr()))...)
	if err == nil || len(env.Hub.Streams()) != 0 {
		t.Fatalf("publish with a bad token: err %v, streams %d\n%s", err, len(env.Hub.Streams()), out)
	}
	probe, err := exec.Command(ffprobe, "-v", "error", "-rtsp_transport", "tcp",
		fmt.Sprintf("rtsp://%s/room/nothing", s.Addr())).CombinedOutput()
	if err == nil || !strings.Contains(string(probe), "404") {
		t.Fatalf("probe of a missing stream: %v\n%s", err, probe)
	}
}

// TestRTSPReadHubStream: a stream published straight into the hub (as WHIP
// does: H.264 packetization-mode 1 + Opus RTP, no parameter sets in the
// SDP) is read over RTSP by ffprobe as H.264 + Opus, with frames decoded.
func TestRTSPReadHubStream(t *testing.T) {
	ffprobe := testenv.Need(t, "ffprobe")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{})
	publishClip(t, env, "room/whip", true)
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	out, err := exec.CommandContext(pctx, ffprobe, "-hide_banner", "-v", "error", "-rtsp_transport", "tcp",
		"-read_intervals", "%+3", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
		"-of", "compact", fmt.Sprintf("rtsp://%s/room/whip", s.Addr())).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=h264") || !strings.Contains(string(out), "codec_name=opus") {
		t.Fatalf("ffprobe RTSP: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "stream|") {
			t.Logf("ffprobe: %s", l)
		}
	}
}
