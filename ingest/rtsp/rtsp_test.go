package rtsp_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtsp"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, env *ingesttest.Env, p rtsp.Params) *rtsp.Server {
	t.Helper()
	p.Hub, p.Addr, p.Logger = env.Hub, "127.0.0.1:0", ingesttest.Logger()
	s, err := rtsp.New(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestRTSPPublishToWHEPAndRead: ffmpeg publishes a test pattern over RTSP
// (ANNOUNCE/RECORD, H.264 + AAC); a pion WHEP viewer receives decodable
// H.264 and Opus; ffprobe reads the same path back over RTSP and finds
// H.264 640x360 and Opus.
func TestRTSPPublishToWHEPAndRead(t *testing.T) {
	ingesttest.Need(t, "ffmpeg")
	ffprobe := ingesttest.Need(t, "ffprobe")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{})
	base := fmt.Sprintf("rtsp://%s/room/cam", s.Addr())
	stop := ingesttest.FFmpeg(t, append(ingesttest.TestPattern(20), "-f", "rtsp", "-rtsp_transport", "tcp", base)...)
	defer stop()
	st := env.WaitLive(t, "room/cam", 15*time.Second)
	if n := len(st.Tracks()); n != 2 {
		t.Fatalf("%d tracks, want H.264 + Opus", n)
	}
	v := env.View(t, "room/cam")
	frames, audio := v.WaitMedia(t, 60, 50, 20*time.Second)
	n, size := ingesttest.Decode(t, frames)
	if size != "640x360" || n < 30 {
		t.Fatalf("decoded %d frames of %s, want >= 30 of 640x360", n, size)
	}
	t.Logf("viewer: %d video frames (%d decoded), %d Opus packets", len(frames), n, audio)

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
	ffmpeg := ingesttest.Need(t, "ffmpeg")
	ffprobe := ingesttest.Need(t, "ffprobe")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{Authorize: func(_, _, token, _ string) error {
		if token != "good" {
			return fmt.Errorf("bad token %q", token)
		}
		return nil
	}})
	out, err := exec.Command(ffmpeg, append(append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"},
		ingesttest.TestPattern(2)...), "-f", "rtsp", "-rtsp_transport", "tcp",
		fmt.Sprintf("rtsp://%s/room/cam?token=bad", s.Addr()))...).CombinedOutput()
	if err == nil || len(env.Hub.Streams()) != 0 {
		t.Fatalf("publish with a bad token: err %v, streams %d\n%s", err, len(env.Hub.Streams()), out)
	}
	out, err = exec.Command(ffprobe, "-v", "error", "-rtsp_transport", "tcp",
		fmt.Sprintf("rtsp://%s/room/nothing", s.Addr())).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "404") {
		t.Fatalf("probe of a missing stream: %v\n%s", err, out)
	}
}

// TestRTSPReadHubStream: a stream published straight into the hub (as WHIP
// does: H.264 packetization-mode 1 + Opus RTP, no parameter sets in the
// SDP) is read over RTSP by ffprobe as H.264 + Opus, with frames decoded.
func TestRTSPReadHubStream(t *testing.T) {
	ffprobe := ingesttest.Need(t, "ffprobe")
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{})
	video, err := clip.LoadH264("../../testdata/clip.h264")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := clip.LoadOpus("../../testdata/clip.ogg")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := env.Hub.Publish("room/whip", []relay.TrackInfo{
		{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
			Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}},
		{Kind: codec.Audio, Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}},
	}, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	defer func() { cancel(); <-done; <-done; pub.End("test over") }()
	go func() {
		defer func() { done <- struct{}{} }()
		pk := frames.NewPacketizer(codec.MimeH264, 96)
		var ts uint32
		_ = clip.Play(ctx, video, func(smp clip.Sample, _ int) error {
			for _, p := range pk.Packetize(ts, ingesttest.SplitAnnexB(smp.Data)) {
				pub.WriteRTP(0, &p.Header, p.Payload)
			}
			ts += uint32(smp.Duration * 90000 / time.Second)
			return nil
		})
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		var ts uint32
		var seq uint16
		_ = clip.Play(ctx, audio, func(smp clip.Sample, _ int) error {
			pub.WriteRTP(1, &rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts}, smp.Data)
			seq++
			ts += uint32(smp.Duration * 48000 / time.Second)
			return nil
		})
	}()
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

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}
