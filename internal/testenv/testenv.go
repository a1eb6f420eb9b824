// Package testenv is what every test of livegate asks of the machine it
// runs on: whether an external program it drives (ffmpeg, ffprobe, nginx,
// redis-server, an S3 server, GStreamer, nft) is there, and a logger for
// the code under test. A missing program skips the test, or fails it when
// LIVEGATE_E2E=1 (CI, where .ci/run installs everything), so a developer
// without them still gets a green run of the rest and CI cannot silently
// skip. It also holds the small things loopback tests of servers and
// child processes share: a free port, a buffer that concurrent writers
// (a logger, a process's stderr) may share, a self-signed certificate.
// Only tests import this package.
package testenv

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// EnvE2E names the variable that turns a missing program into a failure.
const EnvE2E = "LIVEGATE_E2E"

// E2E reports whether missing programs fail tests rather than skip them.
func E2E() bool { return os.Getenv(EnvE2E) == "1" }

// SkipOrFail skips the test, or fails it when LIVEGATE_E2E=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if E2E() {
		t.Fatalf("%s (%s=1 requires it)", msg, EnvE2E)
	}
	t.Skipf("%s: skipping (%s=1 makes this a failure)", msg, EnvE2E)
}

// debian names the package that installs a program, for the skip message.
var debian = map[string]string{
	"ffmpeg":         "ffmpeg",
	"ffprobe":        "ffmpeg",
	"nginx":          "nginx-light libnginx-mod-rtmp",
	"redis-server":   "redis-server",
	"gst-launch-1.0": "gstreamer1.0-tools",
	"nft":            "nftables",
}

// Need returns the path of program, looked up in PATH and then in the sbin
// directories (Debian installs daemons such as nginx there, outside a
// normal user's PATH). Without it the test is skipped, or fails.
func Need(t testing.TB, program string) string {
	t.Helper()
	if p, err := Find(program); err == nil {
		return p
	}
	pkg := debian[program]
	if pkg == "" {
		pkg = program
	}
	SkipOrFail(t, "%s not installed (apt-get install %s)", program, pkg)
	return ""
}

// Find looks program up as Need does, without touching the test.
func Find(program string) (string, error) {
	p, err := exec.LookPath(program)
	if err == nil || filepath.IsAbs(program) {
		return p, err
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p, err2 := exec.LookPath(filepath.Join(dir, program)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

// Logger writes records at level and above to stderr; with
// LIVEGATE_TEST_LOG set it writes everything, for debugging a test.
func Logger(level slog.Level) *slog.Logger {
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
