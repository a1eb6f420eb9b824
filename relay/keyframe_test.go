package relay_test

import (
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// Fifty viewers asking for a keyframe within 100 ms cost the publisher a
// single request (default interval, 500 ms).
func TestKeyframeRequestsSpreadOver100msCoalesce(t *testing.T) {
	_, _, src, s := newStream(t, relay.Params{}, "room/cam", opusInfo, h264Info)
	track := s.Tracks()[1]

	start := time.Now()
	for range 50 {
		track.RequestKeyframe()
		time.Sleep(2 * time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed >= 500*time.Millisecond {
		t.Skipf("requests took %v, longer than the interval", elapsed)
	}
	if r := src.requests(); len(r) != 1 || r[0] != 1 {
		t.Fatalf("publisher got keyframe requests %v, want exactly [1]", r)
	}
	st := s.Stats().Tracks[1]
	if st.KeyframeRequests != 50 || st.KeyframesAsked != 1 {
		t.Errorf("stats: %d requests received, %d sent; want 50 and 1", st.KeyframeRequests, st.KeyframesAsked)
	}
}

// With a 50 ms interval, a concurrent burst of requests from readers causes
// one request; one after the interval causes a second.
func TestKeyframeRequestsCoalesceAndResumeAfterInterval(t *testing.T) {
	const interval = 50 * time.Millisecond
	_, pub, src, s := newStream(t, relay.Params{KeyframeInterval: interval}, "room/cam", h264Info)
	// Readers served from the GOP cache do not ask for a keyframe on join.
	newVideoSender(pub, 0, 1, 1).gop(2)
	var readers []*relay.Reader
	for range 50 {
		r, _ := addReader(t, s, 0)
		readers = append(readers, r)
	}
	if r := src.requests(); len(r) != 0 {
		t.Fatalf("joining readers served from the cache asked for keyframes: %v", r)
	}

	start := time.Now()
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, r := range readers {
		wg.Go(func() {
			<-gate
			r.RequestKeyframe()
		})
	}
	close(gate)
	wg.Wait()
	if elapsed := time.Since(start); elapsed >= interval {
		t.Skipf("burst took %v, longer than the interval", elapsed)
	}
	if r := src.requests(); len(r) != 1 || r[0] != 0 {
		t.Fatalf("after a burst of 50 requests the publisher got %v, want [0]", r)
	}

	time.Sleep(interval + 10*time.Millisecond)
	readers[7].RequestKeyframe()
	readers[8].RequestKeyframe()
	if r := src.requests(); len(r) != 2 {
		t.Fatalf("after the interval the publisher got %d requests, want 2", len(r))
	}
}

// During the grace period there is nobody to ask; the new publisher is asked
// on the track index it published the track at.
func TestKeyframeRequestGoesToCurrentPublisher(t *testing.T) {
	const interval = 20 * time.Millisecond
	h, a, srcA, s := newStream(t, relay.Params{KeyframeInterval: interval, Grace: time.Minute}, "room/cam", h264Info, opusInfo)
	video := s.Tracks()[0]
	video.RequestKeyframe()
	if r := srcA.requests(); len(r) != 1 || r[0] != 0 {
		t.Fatalf("first publisher got %v, want [0]", r)
	}
	a.End("test")
	time.Sleep(interval + 5*time.Millisecond)
	video.RequestKeyframe() // nobody to ask: must not reach the old publisher
	if r := srcA.requests(); len(r) != 1 {
		t.Fatalf("publisher that left was asked for a keyframe: %v", r)
	}

	// The new publisher sends audio first: the video track is its index 1.
	_, srcB := publish(t, h, "room/cam", opusInfo, h264Info)
	time.Sleep(interval + 5*time.Millisecond)
	video.RequestKeyframe()
	if r := srcB.requests(); len(r) != 1 || r[0] != 1 {
		t.Fatalf("new publisher got %v, want [1]", r)
	}
	if s.Tracks()[0] != video {
		t.Fatal("video track was replaced on continuation")
	}
}
