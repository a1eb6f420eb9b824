package composite

import (
	"bytes"
	"errors"
	"os/exec"
	"sync"
	"time"
)

// ErrNoFFmpeg means ffmpeg is missing: no composite can be made.
var ErrNoFFmpeg = errors.New("composite: ffmpeg not found: room composites need ffmpeg (with libx264 and libopus); install ffmpeg or set --ffmpeg")

// findFFmpeg resolves the ffmpeg setting like the gateway's other ffmpeg
// users: "" looks it up in PATH, "-" disables it.
func findFFmpeg(setting string) string {
	switch setting {
	case "-":
		return ""
	case "":
		setting = "ffmpeg"
	}
	p, err := exec.LookPath(setting)
	if err != nil {
		return ""
	}
	return p
}

// ffmpegCmd is a quiet ffmpeg that is killed with its context and given
// a short grace to exit after its pipes close.
func ffmpegCmd(cmd *exec.Cmd, stderr *limitedBuffer) *exec.Cmd {
	cmd.WaitDelay = 2 * time.Second
	cmd.Stderr = stderr
	return cmd
}

// backoff doubles a restart delay from min up to max; a process that ran
// for healthyAfter starts over at min.
type backoff struct {
	min, max, cur time.Duration
}

const healthyAfter = 10 * time.Second

func (b *backoff) next(ran time.Duration) time.Duration {
	if b.cur == 0 || ran >= healthyAfter {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

// limitedBuffer keeps the last max bytes of ffmpeg's stderr: the reason
// it failed is at the end.
type limitedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func newLimitedBuffer() *limitedBuffer { return &limitedBuffer{max: 2048} }

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(bytes.TrimSpace(l.b))
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if over := len(l.b) - l.max; over > 0 {
		l.b = append(l.b[:0], l.b[over:]...)
	}
	return len(p), nil
}
