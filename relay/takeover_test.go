package relay_test

import (
	"errors"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// A publisher killed without a DELETE held its stream (ErrAlreadyLive)
// until its ICE timed out. PublishAs lets its owner's new session take the
// stream over once the old one has been silent for TakeoverAfter, viewers
// continuing; a publisher still sending, another owner, and publications
// made with Publish (relay links, composite, RTMP/RTSP) are never taken
// over.
func TestTakeoverBySameOwnerAfterSilence(t *testing.T) {
	const after = 200 * time.Millisecond
	h := newHub(t, relay.Params{TakeoverAfter: after})
	src := &fakeSource{}
	old, err := h.PublishAs("alice", "room/alice", []relay.TrackInfo{h264Info}, src)
	if err != nil {
		t.Fatal(err)
	}
	// Not sent anything yet (still starting): left alone.
	time.Sleep(after + 50*time.Millisecond)
	if _, err := h.PublishAs("alice", "room/alice", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("owner's second session while the first has not sent yet: %v, want ErrAlreadyLive", err)
	}
	st := old.Stream()
	_, sink := addReader(t, st, 0)
	s := newVideoSender(old, 0, 100, 1000)
	s.gop(3)
	sink.waitCount(t, 4)

	// Still sending: nobody takes over, not even its owner.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.delta()
			}
		}
	}()
	time.Sleep(2 * after)
	if _, err := h.PublishAs("alice", "room/alice", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("owner's second session while the first sends: %v, want ErrAlreadyLive", err)
	}
	if !st.BusyFor("alice") {
		t.Error("BusyFor(owner) false while the publisher sends")
	}
	close(stop)
	<-done

	// Silent, but not yet for TakeoverAfter; then another owner, and a
	// publisher without owner: refused.
	if _, err := h.PublishAs("alice", "room/alice", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("right after the last packet: %v, want ErrAlreadyLive", err)
	}
	time.Sleep(after + 50*time.Millisecond)
	if _, err := h.PublishAs("mallory", "room/alice", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("another owner: %v, want ErrAlreadyLive", err)
	}
	if _, err := h.Publish("room/alice", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("Publish without owner: %v, want ErrAlreadyLive", err)
	}
	if isClosed(old.Superseded()) {
		t.Fatal("a refused takeover superseded the publisher")
	}
	// What an ingest asks before it reads the new publisher's tracks.
	if st.BusyFor("alice") || !st.BusyFor("mallory") || !st.Busy() {
		t.Errorf("silent: BusyFor(owner) %v, BusyFor(other) %v, Busy %v; want false, true, true",
			st.BusyFor("alice"), st.BusyFor("mallory"), st.Busy())
	}

	// The owner's new session takes over: the old one is told, the
	// reader continues on the new publisher's first keyframe with
	// contiguous numbers.
	before := sink.count()
	pub, err := h.PublishAs("alice", "room/alice", []relay.TrackInfo{h264Info}, &fakeSource{})
	if err != nil {
		t.Fatalf("owner's new session after %v of silence: %v", after, err)
	}
	waitClosed(t, "the old publication superseded", old.Superseded())
	if !st.Live() || pub.Stream() != st {
		t.Fatal("the takeover did not continue the same stream")
	}
	s2 := newVideoSender(pub, 0, 5000, 77777)
	s2.gop(3)
	pkts := sink.waitCount(t, before+4)
	assertContiguous(t, "reader across the takeover", pkts)
	// Late packets of the old publisher are dropped.
	s.delta()
	time.Sleep(50 * time.Millisecond)
	if n := sink.count(); n != before+4 {
		t.Fatalf("%d packets after the takeover, want %d (the old publisher's are dropped)", n, before+4)
	}
}

// A publication made with Publish (no owner) is never taken over by
// PublishAs, however long it is silent; its stall (ICE disconnected) still
// lets any publisher continue the stream, as before.
func TestNoTakeoverOfOwnerlessPublication(t *testing.T) {
	h := newHub(t, relay.Params{TakeoverAfter: 50 * time.Millisecond})
	p, _ := publish(t, h, "room/composite", h264Info)
	time.Sleep(150 * time.Millisecond)
	if _, err := h.PublishAs("", "room/composite", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("PublishAs over a silent Publish: %v, want ErrAlreadyLive", err)
	}
	p.SetStalled(true)
	if _, err := h.PublishAs("", "room/composite", []relay.TrackInfo{h264Info}, &fakeSource{}); err != nil {
		t.Fatalf("over a stalled publisher: %v", err)
	}
}
