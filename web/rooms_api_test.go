package web

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/web/rooms"
)

// A room event stream outlives the HTTP server's read timeout (the gateway
// sets one) and ends when the rooms close.
func TestRoomEventsOutliveReadTimeout(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := relay.NewHub(relay.Params{Logger: log})
	defer hub.Close()
	rm := rooms.New(rooms.Params{Logger: log})
	defer rm.Close()
	s := New(Params{Hub: hub, Rooms: rm, Auth: AuthParams{Mode: AuthOff}, Logger: log})
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/rooms/r/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	wait := func(prefix string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended waiting for %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q", prefix)
			}
		}
	}
	wait("event: snapshot")
	time.Sleep(600 * time.Millisecond) // three read timeouts
	if _, err := rm.Chat("r", rooms.Sender{Identity: "a"}, "still there?"); err != nil {
		t.Fatal(err)
	}
	wait("event: chat")
	rm.Close()
	for range lines {
	}
}
