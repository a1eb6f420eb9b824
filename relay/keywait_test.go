package relay_test

import (
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// A reader joining long after the cached keyframe asks the publisher for a
// fresh one and starts on it, at the live edge, without the cached GOP.
func TestLateReaderPrefersFreshKeyframe(t *testing.T) {
	_, pub, src, s := newStream(t, relay.Params{Workers: 2, KeyframeWait: 300 * time.Millisecond}, "room/fresh", h264Info)
	snd := newVideoSender(pub, 0, 100, 90000)
	snd.gop(5)
	time.Sleep(350 * time.Millisecond) // the cached GOP is now old

	_, sink := addReader(t, s, 0)
	waitFor(t, "keyframe request", func() bool { return len(src.requests()) == 1 })
	fresh := snd.gop(3) // the publisher answers
	got := sink.waitCount(t, len(fresh))
	assertPayloads(t, "late reader", got, fresh)
	time.Sleep(400 * time.Millisecond) // past the fallback: no cache replay
	if n := sink.count(); n != len(fresh) {
		t.Fatalf("reader got %d packets, want only the %d fresh ones", n, len(fresh))
	}
}

// If the publisher ignores the request, the cached GOP is served after
// KeyframeWait, followed by live packets without a gap.
func TestLateReaderFallsBackToCache(t *testing.T) {
	_, pub, src, s := newStream(t, relay.Params{Workers: 2, KeyframeWait: 200 * time.Millisecond}, "room/deaf", h264Info)
	snd := newVideoSender(pub, 0, 100, 90000)
	cached := snd.gop(4)
	time.Sleep(250 * time.Millisecond)

	start := time.Now()
	_, sink := addReader(t, s, 0)
	more := []([]byte){snd.delta(), snd.delta()} // arrive while the reader waits
	got := sink.waitCount(t, len(cached)+len(more))
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Fatalf("cache served after %v, want about 200 ms", d)
	}
	assertPayloads(t, "late reader", got, append(append([][]byte{}, cached...), more...))
	live := snd.delta()
	got = sink.waitCount(t, len(cached)+len(more)+1)
	assertPayloads(t, "late reader", got[len(got)-1:], [][]byte{live})
	assertContiguous(t, "late reader", got)
	if len(src.requests()) != 1 {
		t.Fatalf("keyframe requests %v, want one", src.requests())
	}
}

// A worker short of CPU drops packets that waited longer than
// MaxQueueDelay: its readers freeze briefly and resume at the next
// keyframe, instead of falling ever further behind.
func TestStalePacketsAreDropped(t *testing.T) {
	_, pub, _, s := newStream(t, relay.Params{Workers: 1, MaxQueueDelay: 100 * time.Millisecond}, "room/slow", h264Info)
	snd := newVideoSender(pub, 0, 1, 1)
	cached := snd.gop(2) // served from the cache at once
	r, sink := addReader(t, s, 0)
	fresh := append(cached, snd.gop(2)...)
	sink.waitCount(t, len(fresh))

	// A second reader on the same worker stalls it for 300 ms (it blocks
	// on the cached GOP it is served).
	slow := newBlockingSink()
	if _, err := s.AddReader(s.Tracks()[0], slow); err != nil {
		t.Fatal(err)
	}
	<-slow.entered      // blocked on its first (cached) packet
	stale := snd.gop(3) // queued behind the stall
	time.Sleep(300 * time.Millisecond)
	slow.open()
	time.Sleep(50 * time.Millisecond)
	next := snd.gop(2)
	got := sink.waitCount(t, len(fresh)+len(next))
	for _, p := range payloadsOf(got) {
		for _, st := range stale {
			if string(p) == string(st) {
				t.Fatalf("a packet that waited 300 ms was still delivered")
			}
		}
	}
	if r.Dropped() == 0 {
		t.Fatal("stale packets not counted as dropped")
	}
	assertContiguous(t, "reader", got)
}

// A keyframe request inside the coalescing interval is deferred, not lost;
// it is dropped if a keyframe arrives meanwhile.
func TestDeferredKeyframeRequest(t *testing.T) {
	_, pub, src, s := newStream(t, relay.Params{Workers: 1, KeyframeInterval: 200 * time.Millisecond}, "room/defer", h264Info)
	snd := newVideoSender(pub, 0, 1, 1)
	snd.gop(1)
	tr := s.Tracks()[0]

	tr.RequestKeyframe()
	tr.RequestKeyframe() // inside the interval
	if n := len(src.requests()); n != 1 {
		t.Fatalf("%d requests at once, want 1", n)
	}
	waitFor(t, "the deferred request", func() bool { return len(src.requests()) == 2 })

	time.Sleep(250 * time.Millisecond)
	tr.RequestKeyframe()
	tr.RequestKeyframe() // deferred...
	snd.key()            // ...but a keyframe comes anyway
	time.Sleep(400 * time.Millisecond)
	if n := len(src.requests()); n != 3 {
		t.Fatalf("%d requests, want 3 (the deferred one skipped after a keyframe)", n)
	}
}

// A large cached GOP is paced to a new reader, live packets follow it in
// order and without a gap.
func TestCachedGOPIsPaced(t *testing.T) {
	_, pub, _, s := newStream(t, relay.Params{Workers: 1, KeyframeWait: -1}, "room/pace", h264Info)
	snd := newVideoSender(pub, 0, 1, 1)
	cached := snd.gop(199) // 200 packets: 7 steps of 32
	start := time.Now()
	_, sink := addReader(t, s, 0)
	live := [][]byte{snd.delta(), snd.delta()} // arrive while catching up
	if n := sink.count(); n > 64 {
		t.Fatalf("%d packets sent at once, want at most two steps", n)
	}
	got := sink.waitCount(t, len(cached)+len(live))
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("200 cached packets sent in %v: not paced", d)
	}
	assertPayloads(t, "reader", got, append(append([][]byte{}, cached...), live...))
	assertContiguous(t, "reader", got)
}
