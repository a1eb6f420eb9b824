package webhooks

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

// Operators learn once that deliveries are unsigned, and the log never
// shows the credentials a webhook URL carries.
func TestLogsWarnUnsignedAndHideCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	var buf testenv.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	u := strings.Replace(srv.URL, "http://", "http://hookuser:hook-password@", 1) + "/hook?token=hook-query-secret"
	n := New(Params{URLs: []string{u}, Attempts: 2, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Queue: 1, Logger: log})
	for range 50 {
		n.Send(StreamStarted, map[string]string{"path": "r/a"})
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Failed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	n.Close()
	out := buf.String()
	if n.Failed.Load() == 0 || n.Dropped.Load() == 0 {
		t.Fatalf("failed %d dropped %d: the test did not exercise failures and drops", n.Failed.Load(), n.Dropped.Load())
	}
	for _, secret := range []string{"hook-password", "hook-query-secret", "hookuser"} {
		if strings.Contains(out, secret) {
			t.Errorf("log shows %q:\n%s", secret, out)
		}
	}
	if c := strings.Count(out, "webhooks are unsigned"); c != 1 {
		t.Errorf("unsigned warning %d times, want once:\n%s", c, out)
	}
	if c := strings.Count(out, "events dropped"); c != 1 {
		t.Errorf("drop warnings: %d lines for %d drops, want 1:\n%s", c, n.Dropped.Load(), out)
	}
}
