package relay_test

import (
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// The fan-out delay counts every packet once, from its arrival to the end
// of its fan-out, including the time it queued behind a busy worker: what
// the node itself adds for its last viewer.
func TestFanoutDelayCountsQueueAndFanout(t *testing.T) {
	hub := newHub(t, relay.Params{Workers: 1, KeyframeWait: -1})
	pub, err := hub.Publish("live/cam", []relay.TrackInfo{h264Info}, &fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := hub.Get("live/cam")
	var mu sync.Mutex
	var log []string
	slow := &orderSink{id: "a", mu: &mu, log: &log, hold: make(chan struct{}), held: make(chan struct{})}
	for _, s := range []*orderSink{slow, {id: "b", mu: &mu, log: &log}} {
		r, err := st.AddReader(st.Tracks()[0], s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
	}
	if got := hub.FanoutDelay(); got.Samples != 0 {
		t.Fatalf("before any packet: %+v", got)
	}
	snd := newVideoSender(pub, 0, 100, 0)
	snd.key()
	<-slow.held
	for range 3 {
		snd.delta()
	}
	const held = 40 * time.Millisecond
	time.Sleep(held)
	close(slow.hold)
	waitFor(t, "8 writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(log) == 8
	})
	var got relay.FanoutStats
	waitFor(t, "4 samples", func() bool { got = hub.FanoutDelay(); return got.Samples == 4 })
	// All four waited for the held write: the keyframe in it, the deltas
	// queued behind it (they arrived just after it began).
	atLeast := 0
	for i, b := range relay.FanoutBuckets {
		if b >= 0.02 {
			for _, n := range got.Buckets[i:] {
				atLeast += int(n)
			}
			break
		}
	}
	if atLeast != 4 || got.SumSeconds < held.Seconds() || got.SumSeconds > 5 {
		t.Errorf("fan-out delays %+v: want all four over 20 ms and a sum over %v", got, held)
	}
	var total uint64
	for _, n := range got.Buckets {
		total += n
	}
	if total != got.Samples {
		t.Errorf("buckets hold %d samples, Samples says %d", total, got.Samples)
	}
}
