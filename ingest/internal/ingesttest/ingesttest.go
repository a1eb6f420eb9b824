// Package ingesttest is the end-to-end harness of the ingest tests: an
// in-process relay hub, a viewer that takes each track's RTP packets from
// the relay exactly as the relay forwards them to WHEP viewers (after
// checking that a WebRTC viewer's offer accepts the codec as ingest
// describes it), reassembles H.264 frames and counts Opus packets, and
// helpers for ffmpeg. It uses no egress package: adapters never import each
// other, and the way through egress/whep is the gateway tests' to prove
// (TestRTMPAndRTSPIngestReachWHEP). Only tests import this package.
package ingesttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/rtcclienttest"
)

// Logger is quiet unless LIVEGATE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Serve starts an ingest server with newServer(p) and closes it when the
// test ends.
func Serve[P any, S interface{ Close() }](t testing.TB, newServer func(P) (S, error), p P) S {
	t.Helper()
	s, err := newServer(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Env is a relay hub for ingest tests.
type Env struct {
	Hub *relay.Hub
}

// NewEnv starts the hub; it stops with the test.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	hub := relay.NewHub(relay.Params{Logger: Logger(), Grace: -1})
	t.Cleanup(hub.Close)
	return &Env{Hub: hub}
}

// WaitLive waits until path is live.
func (e *Env) WaitLive(t testing.TB, path string, timeout time.Duration) *relay.Stream {
	t.Helper()
	var st *relay.Stream
	testenv.WaitFor(t, timeout, path+" live", func() bool {
		s, ok := e.Hub.Get(path)
		st = s
		return ok && s.Live()
	})
	return st
}

// ExpectTestPattern waits until path is live with two tracks (H.264 and
// Opus) and a viewer gets at least 60 video frames and 50 Opus packets, of
// which at least 30 frames decode as the 640x360 TestPattern.
func (e *Env) ExpectTestPattern(t testing.TB, path string) *relay.Stream {
	t.Helper()
	st := e.WaitLive(t, path, 15*time.Second)
	if n := len(st.Tracks()); n != 2 {
		t.Fatalf("%d tracks, want H.264 + Opus", n)
	}
	frames, audio := e.View(t, path).WaitMedia(t, 60, 50, 20*time.Second)
	n, size := Decode(t, frames)
	if size != "640x360" || n < 30 {
		t.Fatalf("decoded %d frames of %s, want >= 30 of 640x360", n, size)
	}
	t.Logf("viewer: %d video frames (%d decoded), %d Opus packets", len(frames), n, audio)
	return st
}

// Frame is one reassembled H.264 access unit.
type Frame = rtcclienttest.Frame

// Viewer gets a stream's packets as the relay forwards them to viewers.
type Viewer struct {
	mu    sync.Mutex
	asm   rtcclienttest.Assembler
	video []Frame
	audio int
}

// View checks that a WebRTC viewer's offer (pion's default codecs, as
// egress/whep negotiates them) accepts every track of path, then reads
// each track with a relay reader until the test ends.
func (e *Env) View(t testing.TB, path string) *Viewer {
	t.Helper()
	st, ok := e.Hub.Get(path)
	if !ok {
		t.Fatalf("%s is not published", path)
	}
	offer := viewerOffer(t)
	v := &Viewer{}
	for _, tr := range st.Tracks() {
		info := tr.Info()
		var why *rtc.Rejection
		for _, m := range offer.Media {
			if m.Kind != info.Kind {
				continue
			}
			if _, why = m.Accepts(info.Codec); why == nil {
				break
			}
		}
		if why != nil {
			t.Fatalf("a WebRTC viewer refuses %s track %+v: %s", info.Kind, info.Codec, why)
		}
		r, err := st.AddReader(tr, sink{v: v, video: info.Kind == codec.Video})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
	}
	return v
}

// viewerOffer is a recvonly audio and video offer of a pion viewer.
func viewerOffer(t testing.TB) *rtc.Offer {
	t.Helper()
	api, err := rtcclient.LoopbackAPI(nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	sdp, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := rtc.ParseOffer(sdp.SDP, 0)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// sink is a relay reader's end: it keeps complete video frames and counts
// audio packets. The relay's worker calls it; it never blocks for long.
type sink struct {
	v     *Viewer
	video bool
}

func (s sink) WriteRTP(h *rtp.Header, payload []byte) error {
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	if !s.video {
		s.v.audio++
		return nil
	}
	if f, ok := s.v.asm.Push(h, payload); ok && f.Complete {
		s.v.video = append(s.v.video, f)
	}
	return nil
}

func (sink) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }

// Snapshot returns the complete video frames and the audio packet count.
func (v *Viewer) Snapshot() ([]Frame, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Frame(nil), v.video...), v.audio
}

// WaitMedia waits until the viewer has at least frames video frames (the
// first a keyframe) and audio packets.
func (v *Viewer) WaitMedia(t testing.TB, frames, audio int, timeout time.Duration) ([]Frame, int) {
	t.Helper()
	var f []Frame
	var a int
	testenv.Poll(t, timeout, func() string {
		if f, a = v.Snapshot(); len(f) >= frames && a >= audio {
			return ""
		}
		return fmt.Sprintf("the viewer has %d video frames (want %d) and %d audio packets (want %d)", len(f), frames, a, audio)
	})
	return f, a
}

// SplitAnnexB returns the NAL units of an Annex-B buffer.
var SplitAnnexB = rtcclienttest.SplitAnnexB

// Decode writes the frames from the first keyframe on as an H.264
// elementary stream and has ffprobe decode it. It returns the number of
// frames decoded and the picture size.
func Decode(t testing.TB, frames []Frame) (n int, size string) {
	t.Helper()
	ffprobe := testenv.Need(t, "ffprobe")
	var buf bytes.Buffer
	started := false
	for _, f := range frames {
		if !started && !f.Key {
			continue
		}
		started = true
		for _, u := range f.NALUs {
			buf.Write([]byte{0, 0, 0, 1})
			buf.Write(u)
		}
	}
	if !started {
		t.Fatal("no keyframe received")
	}
	file := filepath.Join(t.TempDir(), "in.h264")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-f", "h264", "-count_frames",
		"-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe of received video: %v\n%s", err, out)
	}
	var w, h int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%d,%d,%d", &w, &h, &n); err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return n, fmt.Sprintf("%dx%d", w, h)
}

// ExpectTakeover is the reconnect scenario of an encoder whose network
// dropped (OBS reconnects at once) while the server still holds its old,
// silent connection. publish gives ffmpeg's output arguments for a
// publisher of identity who (the server under test must take the identity
// from the token query parameter). The first encoder is frozen mid-stream
// (SIGSTOP: its connection stays open and silent); after the hub's
// takeover-after (default 1 s) another identity is still refused, and a
// new connection of the same identity takes the stream over with the
// viewer continuing on decodable frames.
func (e *Env) ExpectTakeover(t *testing.T, path string, publish func(who string) []string, refused string) {
	t.Helper()
	bin := testenv.Need(t, "ffmpeg")
	old := exec.Command(bin, append([]string{"-hide_banner", "-loglevel", "error"},
		append(testenv.TestPattern(60), publish("alice")...)...)...)
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Process.Kill(); _ = old.Wait() })
	e.WaitLive(t, path, 15*time.Second)
	v := e.View(t, path)
	v.WaitMedia(t, 15, 0, 15*time.Second)
	if err := old.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the default takeover-after

	out, err := testenv.RunFFmpeg(t, 20*time.Second, append(testenv.TestPattern(2), publish("bob")...)...)
	if err == nil || !strings.Contains(out, refused) {
		t.Fatalf("another identity: err %v, ffmpeg said %q; want it refused (%q)", err, out, refused)
	}

	frozen, _ := v.Snapshot()
	began := time.Now()
	testenv.StartFFmpeg(t, append(testenv.TestPattern(60), publish("alice")...)...)
	frames, _ := v.WaitMedia(t, len(frozen)+30, 0, 15*time.Second)
	t.Logf("the viewer had %d frames when the encoder froze, %d %v after its reconnect began",
		len(frozen), len(frames), time.Since(began).Round(time.Millisecond))
	if n, _ := Decode(t, frames); n < len(frames)-1 {
		t.Errorf("%d of %d frames decode across the takeover", n, len(frames))
	}
}
