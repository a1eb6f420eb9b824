// Package ffproc is the one place that knows how livegate runs ffmpeg as a
// child process: how the ffmpeg setting resolves to a binary, the quiet
// arguments every invocation starts with, the bounded tail of stderr that
// says why a process failed, the grace a process gets to exit once its
// pipes close, and the backoff between restarts. The Opus->AAC transcoder
// (relay/aac), the AAC->Opus one of RTMP/RTSP ingest (ingest/internal/mediain)
// and the room composite use it; what each process does stays with them.
package ffproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"time"
)

// Find resolves an ffmpeg setting: "" looks up "ffmpeg" in PATH, "-" means
// none, anything else is a name in PATH or a path. It returns "" when there
// is no usable ffmpeg, so callers can refuse up front what needs one.
func Find(setting string) string {
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

// Quiet are the arguments every ffmpeg of the gateway starts with: no
// banner, no reading of the terminal, errors only (stderr is kept as a
// Tail, and a chatty ffmpeg would fill it with progress lines).
var Quiet = []string{"-hide_banner", "-nostdin", "-loglevel", "error"}

// WaitDelay is how long a process may take to exit after its context ends
// or its pipes close before it is killed: long enough to flush, short
// enough that a stuck ffmpeg never holds up a shutdown.
const WaitDelay = 2 * time.Second

// Command returns ffmpeg (bin, from Find) with Quiet and args, killed when
// ctx ends, its stderr's last bytes kept in the returned Tail.
func Command(ctx context.Context, bin string, args ...string) (*exec.Cmd, *Tail) {
	cmd := exec.CommandContext(ctx, bin, append(append([]string(nil), Quiet...), args...)...)
	cmd.WaitDelay = WaitDelay
	tail := NewTail(TailSize)
	cmd.Stderr = tail
	return cmd, tail
}

// StartPiped starts cmd with its stdin and stdout as pipes: every user of
// ffmpeg here streams media in and out.
func StartPiped(cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser, err error) {
	if stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, err
	}
	if stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, nil, err
	}
	if err = cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting ffmpeg: %w", err)
	}
	return stdin, stdout, nil
}

// TailSize is how much of a process's stderr Command keeps.
const TailSize = 4096

// Tail keeps the last bytes written to it: the reason ffmpeg failed is at
// the end of its stderr. It is safe for concurrent use.
type Tail struct {
	mu  sync.Mutex
	b   []byte
	max int
}

// NewTail keeps the last max bytes.
func NewTail(max int) *Tail { return &Tail{max: max} }

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// String is the kept text without surrounding white space.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// Ended says why an ffmpeg whose output a caller read ended: its exit
// status (werr, from Wait) when it failed, else the error that ended the
// reading (rerr; io.EOF or nil: its output just ended), each with the tail
// of its stderr.
func Ended(werr, rerr error, stderr *Tail) error {
	switch {
	case werr != nil:
		return fmt.Errorf("ffmpeg: %w (%s)", werr, stderr.String())
	case rerr == nil || errors.Is(rerr, io.EOF):
		return fmt.Errorf("ffmpeg output ended (%s)", stderr.String())
	default:
		return fmt.Errorf("ffmpeg output ended: %w (%s)", rerr, stderr.String())
	}
}

// HealthyAfter is how long a process must run for its next failure to be
// taken as new rather than as the same fault again.
const HealthyAfter = 10 * time.Second

// Backoff is the delay before restarting a process that ended: Min after a
// process that ran HealthyAfter (or the first time), doubling up to Max
// while it keeps failing sooner. The zero Min and Max mean 500 ms and 10 s.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay before the next start of a process that ran for
// ran.
func (b *Backoff) Next(ran time.Duration) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 500 * time.Millisecond
	}
	if hi < lo {
		hi = max(lo, 10*time.Second)
	}
	if b.cur == 0 || ran >= HealthyAfter {
		b.cur = lo
	} else {
		b.cur = min(b.cur*2, hi)
	}
	return b.cur
}
