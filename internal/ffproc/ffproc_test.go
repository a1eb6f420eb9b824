package ffproc

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestFind(t *testing.T) {
	if Find("-") != "" {
		t.Error(`"-" must mean no ffmpeg`)
	}
	if Find("/nonexistent/ffmpeg") != "" {
		t.Error("a missing binary must resolve to none")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if got := Find("sh"); got != sh {
		t.Errorf("Find(sh) = %q, want %q", got, sh)
	}
}

// The reason a process failed is at the end of its stderr: the tail keeps
// that, however much came before.
func TestTailKeepsTheEnd(t *testing.T) {
	tl := NewTail(16)
	for range 100 {
		_, _ = tl.Write([]byte("progress line\n"))
	}
	_, _ = tl.Write([]byte("fatal: no codec\n"))
	if got := tl.String(); got != "fatal: no codec" {
		t.Fatalf("tail %q", got)
	}
}

func TestCommandKeepsStderrAndStopsWithContext(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd, tail := Command(context.Background(), sh)
	// A script in place of the arguments ffmpeg would get.
	cmd.Args = []string{sh, "-c", "echo started >&2; echo why it failed >&2; exit 3"}
	if err := cmd.Run(); err == nil {
		t.Fatal("exit 3 reported as success")
	}
	if got := tail.String(); !strings.HasSuffix(got, "why it failed") {
		t.Fatalf("stderr tail %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd, _ = Command(ctx, sh)
	cmd.Args = []string{sh, "-c", "sleep 30"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	_ = cmd.Wait()
	if d := time.Since(start); d > WaitDelay+time.Second {
		t.Fatalf("process outlived its context by %v", d)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 4 * time.Second}
	var got []time.Duration
	for _, ran := range []time.Duration{0, time.Second, time.Second, time.Second, time.Second, HealthyAfter, 0} {
		got = append(got, b.Next(ran))
	}
	want := []time.Duration{1, 2, 4, 4, 4, 1, 2}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v s", got, want)
		}
	}
}
