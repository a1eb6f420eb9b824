package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// ffmpegQuiet starts every ffmpeg a test runs: no banner, errors only, no
// reading of the terminal (a test has none).
var ffmpegQuiet = []string{"-hide_banner", "-loglevel", "error", "-nostdin"}

func ffmpegArgs(args []string) []string {
	return append(append([]string(nil), ffmpegQuiet...), args...)
}

// RunFFmpeg runs ffmpeg with args until it exits, at most timeout, and
// returns what it printed.
func RunFFmpeg(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	bin := Need(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, ffmpegArgs(args)...).CombinedOutput()
	return string(out), err
}

// MakeWithFFmpeg runs ffmpeg with args to write a file a test needs
// (overwriting it), failing the test when ffmpeg fails or takes more than
// two minutes.
func MakeWithFFmpeg(t testing.TB, args ...string) {
	t.Helper()
	if out, err := RunFFmpeg(t, 2*time.Minute, append([]string{"-y"}, args...)...); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

// StartFFmpeg runs ffmpeg with args in the background until it exits or
// the test ends; the returned function stops it, waits, logs what it
// printed and returns how it ended.
func StartFFmpeg(t testing.TB, args ...string) (stop func() error) {
	t.Helper()
	bin := Need(t, "ffmpeg")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, ffmpegArgs(args)...)
	cmd.WaitDelay = 3 * time.Second
	var stderr Buffer
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
			if out := stderr.String(); out != "" {
				t.Logf("ffmpeg: %s", out)
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestPattern is ffmpeg's input arguments for a real-time test pattern
// (640x360, 30 fps) with a 1 kHz tone for secs seconds, encoded as H.264
// baseline + AAC (the recipes' ff_publish_*.sh): what an RTMP or RTSP
// camera or encoder sends.
func TestPattern(secs int) []string {
	return []string{"-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", fmt.Sprint(secs), "-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-b:v", "800k",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"}
}
