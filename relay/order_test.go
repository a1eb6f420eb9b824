package relay_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
)

// orderSink logs "ID:seq" into a log shared by several readers, and can
// hold its first write until released (a busy worker).
type orderSink struct {
	id   string
	mu   *sync.Mutex
	log  *[]string
	hold chan struct{} // nil: never holds
	held chan struct{}
	once sync.Once
}

func (s *orderSink) WriteRTP(h *rtp.Header, _ []byte) error {
	if s.hold != nil {
		s.once.Do(func() {
			close(s.held)
			<-s.hold
		})
	}
	s.mu.Lock()
	*s.log = append(*s.log, fmt.Sprintf("%s:%d", s.id, h.SequenceNumber))
	s.mu.Unlock()
	return nil
}

func (s *orderSink) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }

// Packets that queue up while a worker is busy (the rest of a video frame)
// go out reader by reader: each reader gets all of them before the next
// reader gets any, so the median reader has the whole frame after half the
// worker's round instead of after nearly all of it.
func TestQueuedPacketsGoReaderByReader(t *testing.T) {
	hub := newHub(t, relay.Params{Workers: 1, KeyframeWait: -1})
	pub, err := hub.Publish("live/cam", []relay.TrackInfo{h264Info}, &fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := hub.Get("live/cam")
	var mu sync.Mutex
	var log []string
	a := &orderSink{id: "a", mu: &mu, log: &log, hold: make(chan struct{}), held: make(chan struct{})}
	sinks := []*orderSink{a, {id: "b", mu: &mu, log: &log}, {id: "c", mu: &mu, log: &log}}
	for _, s := range sinks {
		r, err := st.AddReader(st.Tracks()[0], s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
	}
	snd := newVideoSender(pub, 0, 100, 0)
	snd.key()
	<-a.held // the worker is busy with the keyframe
	for range 4 {
		snd.delta()
	}
	close(a.hold)
	waitFor(t, "15 writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(log) == 15
	})
	var first []string
	for _, s := range []string{"a", "b", "c"} {
		first = append(first, s+":100")
	}
	want := slices.Clone(first)
	for _, s := range []string{"a", "b", "c"} {
		for seq := 101; seq <= 104; seq++ {
			want = append(want, fmt.Sprintf("%s:%d", s, seq))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(log, want) {
		t.Fatalf("order\n got %v\nwant %v", log, want)
	}
}
