// Package ingesttest is the end-to-end harness of the ingest tests: an
// in-process relay hub with the real WHEP server on loopback, a pion WHEP
// viewer that reassembles H.264 frames and counts Opus packets, and
// helpers for ffmpeg. It imports egress/whep because what ingest promises
// is "reaches WHEP viewers"; only tests import this package.
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
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/egress/whep"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
)

// SkipOrFail skips the test, or fails it when LIVEGATE_E2E=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("LIVEGATE_E2E") == "1" {
		t.Fatalf("%s (LIVEGATE_E2E=1 requires it)", msg)
	}
	t.Skipf("%s: skipping (LIVEGATE_E2E=1 makes this a failure)", msg)
}

// Need returns the path of program, skipping the test without it.
func Need(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		SkipOrFail(t, "%s not installed (apt-get install ffmpeg)", program)
	}
	return p
}

// Logger is quiet unless LIVEGATE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Env is a hub with a WHEP server on loopback.
type Env struct {
	Hub  *relay.Hub
	WHEP *whep.Server
	eng  *rtc.Engine
	api  *webrtc.API
}

// NewEnv starts the hub, the WebRTC engine and the WHEP server; they stop
// with the test.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	log := Logger()
	hub := relay.NewHub(relay.Params{Logger: log, Grace: -1})
	eng, err := rtc.NewEngine(rtc.Config{UDPAddr: "127.0.0.1:0", IPs: []string{"127.0.0.1"}, Logger: log})
	if err != nil {
		hub.Close()
		t.Fatal(err)
	}
	srv := whep.New(whep.Params{Engine: eng, Hub: hub, Logger: log})
	api, err := rtcclient.LoopbackAPI(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Hub: hub, WHEP: srv, eng: eng, api: api}
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
		_ = eng.Close()
	})
	return e
}

// WaitLive waits until path is live.
func (e *Env) WaitLive(t testing.TB, path string, timeout time.Duration) *relay.Stream {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if st, ok := e.Hub.Get(path); ok && st.Live() {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not live after %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Frame is one reassembled H.264 access unit.
type Frame struct {
	NALUs [][]byte
	Key   bool
}

// Viewer is a WHEP viewer of video and audio.
type Viewer struct {
	pc    *webrtc.PeerConnection
	mu    sync.Mutex
	video []Frame
	audio int
	wg    sync.WaitGroup
}

// View connects a viewer to path through the WHEP server's Offer.
func (e *Env) View(t testing.TB, path string) *Viewer {
	t.Helper()
	pc, err := e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &Viewer{pc: pc}
	t.Cleanup(func() {
		_ = pc.Close()
		v.wg.Wait()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				v.readVideo(tr)
				return
			}
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				v.mu.Lock()
				v.audio++
				v.mu.Unlock()
			}
		}()
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.WHEP.Offer(ctx, path, pc.LocalDescription().SDP, "test")
	if err != nil {
		t.Fatalf("WHEP offer for %s: %v", path, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.Answer()}); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *Viewer) readVideo(tr *webrtc.TrackRemote) {
	var depack codecs.H264Packet
	var cur Frame
	var curTS uint32
	var last uint16
	have, broken := false, false
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if !have || pkt.Timestamp != curTS {
			cur, curTS, broken = Frame{}, pkt.Timestamp, false
		}
		if have && pkt.SequenceNumber != last+1 {
			broken = true
		}
		have, last = true, pkt.SequenceNumber
		annexB, err := depack.Unmarshal(pkt.Payload)
		if err != nil {
			broken = true
			continue
		}
		for _, n := range SplitAnnexB(annexB) {
			if len(n) > 0 && n[0]&0x1f == 5 {
				cur.Key = true
			}
			cur.NALUs = append(cur.NALUs, n)
		}
		if pkt.Marker {
			if !broken {
				v.mu.Lock()
				v.video = append(v.video, cur)
				v.mu.Unlock()
			}
			cur = Frame{}
		}
	}
}

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
	deadline := time.Now().Add(timeout)
	for {
		f, a := v.Snapshot()
		if len(f) >= frames && a >= audio {
			return f, a
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the viewer has %d video frames (want %d) and %d audio packets (want %d)",
				timeout, len(f), frames, a, audio)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SplitAnnexB returns the NAL units of an Annex-B buffer.
func SplitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 {
			break
		}
		b = b[i+3:]
		j := bytes.Index(b, []byte{0, 0, 1})
		if j < 0 {
			out = append(out, b)
			break
		}
		n := b[:j]
		if len(n) > 0 && n[len(n)-1] == 0 {
			n = n[:len(n)-1]
		}
		out = append(out, n)
		b = b[j:]
	}
	return out
}

// Decode writes the frames from the first keyframe on as an H.264
// elementary stream and has ffprobe decode it. It returns the number of
// frames decoded and the picture size.
func Decode(t testing.TB, frames []Frame) (n int, size string) {
	t.Helper()
	ffprobe := Need(t, "ffprobe")
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

// FFmpeg runs ffmpeg with args until it exits or the test ends; the
// returned function stops it and waits.
func FFmpeg(t testing.TB, args ...string) (stop func() error) {
	t.Helper()
	bin := Need(t, "ffmpeg")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)...)
	cmd.WaitDelay = 3 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			result = <-done
			if stderr.Len() > 0 {
				t.Logf("ffmpeg: %s", stderr.String())
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestPattern is ffmpeg's input arguments for a real-time test pattern
// (640x360, 30 fps) with a 1 kHz tone for secs seconds, encoded as H.264
// baseline + AAC (the recipes' ff_publish_*.sh).
func TestPattern(secs int) []string {
	return []string{"-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", fmt.Sprint(secs), "-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-b:v", "800k",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"}
}
