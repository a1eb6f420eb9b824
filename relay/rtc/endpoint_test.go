package rtc

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

type stubTransport struct{ closed atomic.Bool }

func (t *stubTransport) Close()              { t.closed.Store(true) }
func (t *stubTransport) RemoteUfrag() string { return "remote" }
func (t *stubTransport) Restart(string, string) (string, string, error) {
	return "", "", errors.New("not supported")
}

// A peer that never connects is ended after the connect timeout, and its
// place under the session limit is free again at once.
func TestUnconnectedSessionFreesItsPlace(t *testing.T) {
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ep := NewEndpoint(1)
	tr := &stubTransport{}
	sess := NewTransportSession("room/cam", "127.0.0.1:5000", tr)
	if err := ep.AddSession(sess); err != nil {
		t.Fatal(err)
	}
	if err := ep.AddSession(NewTransportSession("room/cam", "127.0.0.1:5001", &stubTransport{})); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("second session over a limit of 1: %v, want ErrTooManySessions", err)
	}
	if got, err := ep.Session("room/cam", sess.ID); got != sess || err != nil {
		t.Fatalf("Session = %v, %v", got, err)
	}
	if _, err := ep.Session("room/other", sess.ID); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("another path's lookup: %v, want ErrSessionNotFound", err)
	}

	result := make(chan bool, 1)
	start := time.Now()
	ep.Go(func() { result <- sess.AwaitConnect(make(chan struct{}), nil, 50*time.Millisecond, log, "viewer") })
	if <-result {
		t.Fatal("AwaitConnect reported a connection that never came")
	}
	if waited := time.Since(start); waited < 50*time.Millisecond || waited > 2*time.Second {
		t.Errorf("ended after %v, want the 50ms timeout", waited)
	}
	if !tr.closed.Load() || ep.Sessions() != 0 {
		t.Errorf("after the timeout: transport closed %v, %d sessions live; want closed and 0", tr.closed.Load(), ep.Sessions())
	}
	if !strings.Contains(logs.String(), "viewer did not connect in time") {
		t.Errorf("the timeout is not logged:\n%s", logs.String())
	}
	if err := ep.AddSession(NewTransportSession("room/cam", "127.0.0.1:5002", &stubTransport{})); err != nil {
		t.Errorf("a new session after the timeout: %v", err)
	}
	ep.Close()
}

// A connected peer is reported at once; a stream that ends first (gone)
// ends the session; Close ends every session and waits for the
// goroutines started with Go.
func TestAwaitConnectAndClose(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ep := NewEndpoint(0)
	connected := make(chan struct{})
	close(connected)
	up := NewTransportSession("a/b", "p", &stubTransport{})
	if !up.AwaitConnect(connected, nil, time.Minute, log, "publisher") {
		t.Error("a connected peer is not reported")
	}

	gone := make(chan struct{})
	close(gone)
	ended := NewTransportSession("a/b", "p", &stubTransport{})
	if ended.AwaitConnect(make(chan struct{}), gone, time.Minute, log, "viewer") {
		t.Error("AwaitConnect reported a connection after the stream ended")
	}
	select {
	case <-ended.Done():
	default:
		t.Error("the session outlives its stream")
	}

	held := NewTransportSession("a/b", "p", &stubTransport{})
	if err := ep.AddSession(held); err != nil {
		t.Fatal(err)
	}
	var finished atomic.Bool
	ep.Go(func() {
		<-held.Done()
		time.Sleep(20 * time.Millisecond)
		finished.Store(true)
	})
	ep.Close()
	if !finished.Load() || ep.Sessions() != 0 {
		t.Errorf("Close returned before its goroutines (%v) or left %d sessions", finished.Load(), ep.Sessions())
	}
}
