package webhooks

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type receiver struct {
	mu     sync.Mutex
	events []Event
	fails  int // answer 500 to this many requests first
	srv    *httptest.Server
}

func newReceiver(t *testing.T, secret string, fails int) *receiver {
	r := &receiver{fails: fails}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if got, want := req.Header.Get(HeaderSignature), Sign(secret, req.Header.Get(HeaderTimestamp), body); secret != "" && got != want {
			t.Errorf("signature %q, want %q", got, want)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fails > 0 {
			r.fails--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var e Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("body %q: %v", body, err)
		}
		if req.Header.Get(HeaderEvent) != e.Type {
			t.Errorf("event header %q, body type %q", req.Header.Get(HeaderEvent), e.Type)
		}
		r.events = append(r.events, e)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

func TestSignedRetriedInOrder(t *testing.T) {
	good := newReceiver(t, "s3cret", 0)
	flaky := newReceiver(t, "s3cret", 2)
	n := New(Params{URLs: []string{good.srv.URL, flaky.srv.URL}, Secret: "s3cret",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	defer n.Close()
	n.Send(StreamStarted, map[string]string{"stream": "r/a"})
	n.Send(StreamEnded, map[string]string{"stream": "r/a"})
	deadline := time.Now().Add(5 * time.Second)
	for len(flaky.types()) < 2 || len(good.types()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v and %v", good.types(), flaky.types())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range []*receiver{good, flaky} {
		if got := r.types(); got[0] != StreamStarted || got[1] != StreamEnded {
			t.Fatalf("order %v", got)
		}
	}
	if n.Delivered.Load() != 4 || n.Failed.Load() != 0 {
		t.Fatalf("delivered %d failed %d", n.Delivered.Load(), n.Failed.Load())
	}
}

func TestGivesUpAndDropsWhenFull(t *testing.T) {
	dead := newReceiver(t, "", 1000)
	n := New(Params{URLs: []string{dead.srv.URL}, Attempts: 2, Queue: 1,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	defer n.Close()
	for range 5 {
		n.Send(EgressFailed, nil)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Failed.Load()+n.Dropped.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("failed %d dropped %d", n.Failed.Load(), n.Dropped.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n.Dropped.Load() == 0 {
		t.Fatal("a full queue dropped nothing")
	}
}
