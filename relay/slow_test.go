package relay_test

import (
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// blocked is a stream whose only worker is stuck in a video reader's sink.
// An audio reader on the same worker serves as a probe: once it has an audio
// packet, the worker has handled everything queued before it.
type blocked struct {
	t     *testing.T
	pub   *relay.Publication
	audio *sender
	probe *fakeSink
}

// drain waits until the worker has handled every job queued so far. The
// probe packet may itself be dropped while the queue is full: then it sends
// another one.
func (b *blocked) drain() {
	b.t.Helper()
	n := b.probe.count()
	deadline := time.Now().Add(5 * time.Second)
	for b.probe.count() == n {
		if time.Now().After(deadline) {
			b.t.Fatal("worker did not drain")
		}
		b.audio.key()
		for range 20 {
			if b.probe.count() != n {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// startBlocked attaches a blocking sink and sends a keyframe that gets the
// only worker stuck in the sink.
func startBlocked(t *testing.T, h *relay.Hub, path string) (*blocked, *sender, *relay.Reader, *fakeSink, []byte) {
	t.Helper()
	pub, _ := publish(t, h, path, h264Info, opusInfo)
	s, _ := h.Get(path)
	_, probe := addReader(t, s, 1)
	b := &blocked{t: t, pub: pub, audio: newAudioSender(pub, 1, 1, 1), probe: probe}
	sink := newBlockingSink()
	r, err := s.AddReader(s.Tracks()[0], sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	t.Cleanup(func() {
		select {
		case <-sink.gate:
		default:
			sink.open()
		}
	})
	snd := newVideoSender(pub, 0, 300, 3000)
	k1 := snd.key()
	waitClosed(t, "the worker to block in the sink", sink.entered)
	return b, snd, r, sink, k1
}

// paced waits for the worker after a packet was sent, so that packets sent
// after the reader recovered are not dropped by the small test queue.
func (b *blocked) paced(p []byte) []byte {
	b.drain()
	return p
}

// A viewer that cannot keep up never slows the publisher down: its packets
// are dropped, counted, and once it is back it gets what was queued before
// the drop, then resumes at the next keyframe without a gap in its sequence
// numbers.
func TestSlowReaderDoesNotBlockPublisher(t *testing.T) {
	const queue, n = 4, 500
	h := newHub(t, relay.Params{Workers: 1, WorkerQueue: queue})
	b, snd, r, sink, k1 := startBlocked(t, h, "room/cam")

	done := make(chan time.Duration)
	var queued [][]byte // the first packets fit in the worker's queue
	go func() {
		start := time.Now()
		for i := range n {
			var p []byte
			if i%50 == 49 {
				p = snd.key() // keyframes are dropped as well while the reader is stuck
			} else {
				p = snd.delta()
			}
			if i < queue {
				queued = append(queued, p)
			}
		}
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("%d writes with a stuck reader took %v", n, d)
	case <-time.After(5 * time.Second):
		sink.open()
		t.Fatal("publisher's WriteRTP blocked on a stuck reader")
	}
	if got, want := r.Dropped(), uint64(n-queue); got != want {
		t.Errorf("Dropped() = %d, want %d", got, want)
	}
	s, _ := h.Get("room/cam")
	if st := s.Stats().Tracks[0]; st.Dropped != uint64(n-queue) || st.PacketsIn != n+1 {
		t.Errorf("stats: dropped %d, packets in %d; want %d and %d", st.Dropped, st.PacketsIn, n-queue, n+1)
	}

	sink.open()
	b.drain()
	b.paced(snd.delta()) // still no keyframe: nothing to resume with
	b.paced(snd.delta())
	resume := [][]byte{b.paced(snd.key())}
	for range 5 {
		resume = append(resume, b.paced(snd.delta()))
	}
	want := append(append([][]byte{k1}, queued...), resume...)
	got := sink.waitCount(t, len(want))
	assertPayloads(t, "slow reader", got, want)
	assertContiguous(t, "slow reader", got)
}

// If a keyframe was still queued for the reader when later packets had to be
// dropped, resuming at that queued keyframe would skip over the drop: the
// reader gets what was queued before the drop, then resumes at a keyframe
// sent after the packets it lost, with no gap in its sequence numbers.
func TestSlowReaderResumesAfterLastDrop(t *testing.T) {
	h := newHub(t, relay.Params{Workers: 1, WorkerQueue: 4})
	b, snd, r, sink, k1 := startBlocked(t, h, "room/cam")

	queued := [][]byte{snd.delta(), snd.key(), snd.delta(), snd.delta()} // fills the queue
	for range 10 {
		snd.delta() // dropped
	}
	if d := r.Dropped(); d != 10 {
		t.Fatalf("Dropped() = %d, want 10", d)
	}
	sink.open()
	b.drain()
	b.paced(snd.delta()) // after the drop, before a keyframe: undecodable
	b.paced(snd.delta())
	resume := [][]byte{b.paced(snd.key())}
	for range 3 {
		resume = append(resume, b.paced(snd.delta()))
	}

	want := append([][]byte{k1}, queued...)
	want = append(want, resume...)
	got := sink.waitCount(t, len(want))
	assertPayloads(t, "slow reader", got, want)
	assertContiguous(t, "slow reader", got)
}

// A publisher that reconnects while a reader still has packets of the old
// publisher queued: the reader must not get the new publisher's delta frames
// before its keyframe, whatever old keyframe was still in the queue.
func TestQueuedOldKeyframeDoesNotLetNewPublisherDeltasThrough(t *testing.T) {
	h := newHub(t, relay.Params{Workers: 1, WorkerQueue: 4, Grace: time.Minute})
	b, snd, _, sink, k1 := startBlocked(t, h, "room/cam")
	queued := [][]byte{snd.delta(), snd.key(), snd.delta()}
	b.pub.End("reconnect")
	pubB, _ := publish(t, h, "room/cam", h264Info, opusInfo)
	b.audio = newAudioSender(pubB, 1, 9000, 9000)
	sndB := newVideoSender(pubB, 0, 40000, 12345678)
	sndB.delta() // 4th queued job: a delta of B
	sink.open()
	b.drain()
	fromB := [][]byte{b.paced(sndB.key())}
	for range 3 {
		fromB = append(fromB, b.paced(sndB.delta()))
	}
	want := append(append([][]byte{k1}, queued...), fromB...)
	got := sink.waitCount(t, len(want))
	assertPayloads(t, "reader", got, want)
	assertContiguous(t, "reader", got)
}
