package tree

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/relay"
)

// Found: Ensure added to the Puller's wait group without looking at
// whether Close had begun waiting on it (a WaitGroup misuse -race reports,
// and a pull goroutine nobody waits for). Ensures racing a Close: every one
// returns, none starts a pull after Close, and nothing is left running.
func TestEnsureDuringClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// A parent that never answers: the first pull is mid-dial when Close comes.
	quit := make(chan struct{})
	parent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	defer parent.Close()
	defer close(quit)
	hub := relay.NewHub(relay.Params{Logger: slog.New(slog.DiscardHandler)})
	defer hub.Close()
	for round := range 20 {
		pl := New(Params{Hub: hub, Parents: []string{parent.URL}, Logger: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					ectx, ecancel := context.WithTimeout(ctx, 20*time.Millisecond)
					_ = pl.Ensure(ectx, "r/s"+string(rune('a'+g))+string(rune('a'+i%26)))
					ecancel()
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		pl.Close()
		// After Close, Ensure refuses at once and starts nothing.
		start := time.Now()
		if err := pl.Ensure(ctx, "r/late"); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ensure after Close: %v, want a closed error", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Ensure after Close took %v", d)
		}
		close(stop)
		wg.Wait()
		cancel()
	}
}
