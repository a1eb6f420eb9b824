package frames

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
)

// browserSource stands in for a browser publisher: it encodes a keyframe
// at the start and then only when asked (its next frame is one).
type browserSource struct {
	asked   atomic.Int64
	pending atomic.Bool
}

func (s *browserSource) RequestKeyframe(int) {
	s.asked.Add(1)
	s.pending.Store(true)
}

// publishLikeBrowser sends one-packet H.264 frames at 30 fps in real time
// until ctx ends: an IDR first and whenever src was asked, else non-IDR.
func publishLikeBrowser(ctx context.Context, pub *relay.Publication, src *browserSource) {
	h := rtp.Header{Version: 2, PayloadType: 96, Marker: true, SequenceNumber: 100, Timestamp: 9000}
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ; i++ {
		p := []byte{0x41, 0x9a, byte(i), byte(i >> 8)} // non-IDR slice
		if i == 0 || src.pending.Swap(false) {
			p[0] = 0x65 // IDR slice
		}
		pub.WriteRTP(0, &h, p)
		h.SequenceNumber++
		h.Timestamp += 3000
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// keyframeGaps reads r until ctx ends and returns the distances between
// keyframes in PTS ticks (90 kHz).
func keyframeGaps(ctx context.Context, r *Reader) []int64 {
	var gaps []int64
	last := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return gaps
		case f := <-r.Frames():
			if !f.Key {
				continue
			}
			if last >= 0 {
				gaps = append(gaps, f.PTS-last)
			}
			last = f.PTS
		}
	}
}

// publishBrowserHost publishes an H.264 track from a browserSource at
// room/host on a hub that coalesces keyframe requests over 50 ms and asks
// for a keyframe at least every maxInterval; it closes with the test.
func publishBrowserHost(t *testing.T, maxInterval time.Duration) (*relay.Publication, *browserSource) {
	t.Helper()
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 2,
		KeyframeInterval: 50 * time.Millisecond, KeyframeMaxInterval: maxInterval})
	t.Cleanup(hub.Close)
	src := &browserSource{}
	pub, err := hub.Publish("room/host", []relay.TrackInfo{h264Info}, src)
	if err != nil {
		t.Fatal(err)
	}
	return pub, src
}

// Three frame readers (say HLS, an RTMP push and a recording) on a browser
// host that sends keyframes only when asked: every GOP they see stays
// within keyframe-max-interval, and the publisher is asked once per GOP,
// not once per reader.
func TestKeyframeCadenceForFrameReaders(t *testing.T) {
	const maxInterval = 300 * time.Millisecond
	const frame = 3000 // PTS ticks at 30 fps
	pub, src := publishBrowserHost(t, maxInterval)
	st := pub.Stream()
	l := New(Params{Logger: testLogger()})
	var readers []*Reader
	for range 3 {
		r, err := l.Subscribe(st, st.Tracks()[0])
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
	}

	const run = 2100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	gaps := make([][]int64, len(readers))
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Go(func() { gaps[i] = keyframeGaps(ctx, r) })
	}
	publishLikeBrowser(ctx, pub, src)
	wg.Wait()

	// A GOP may pass the target by the frame that was being encoded when
	// the request arrived, and one more on a busy machine.
	limit := int64(maxInterval.Seconds()*90000) + 2*frame
	for i, g := range gaps {
		if len(g) < 4 {
			t.Fatalf("reader %d saw %d keyframe gaps in %v, want about %d", i, len(g), run, int(run/maxInterval))
		}
		for _, d := range g {
			if d > limit {
				t.Errorf("reader %d: GOP of %.0f ms, want <= %v (+2 frames): %v", i, float64(d)/90, maxInterval, g)
				break
			}
		}
	}
	asked := src.asked.Load()
	// About one request per GOP, plus the readers' join requests and a
	// repeat when the answer is late on a busy machine; three readers
	// asking separately would be three times the GOPs.
	if max := int64(len(gaps[0]))*3/2 + 3; asked > max {
		t.Errorf("publisher asked %d times for %d GOPs, want <= %d (one request per GOP for the track)", asked, len(gaps[0]), max)
	}
	if c := st.Stats().Tracks[0].CadenceRequests; c == 0 {
		t.Errorf("stats show no cadence requests")
	}
	t.Logf("publisher asked %d times in %v; GOPs seen (ticks) %v", asked, run, gaps[0])
}

// A stream watched only by WebRTC viewers (plain RTP readers) keeps the
// publisher's own GOP: no keyframe requests beyond a viewer's join.
func TestKeyframeCadenceNotForRTPViewers(t *testing.T) {
	pub, src := publishBrowserHost(t, 300*time.Millisecond)
	st := pub.Stream()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishLikeBrowser(ctx, pub, src)
	}()
	time.Sleep(100 * time.Millisecond) // a keyframe in the cache: the viewer joins without asking
	rd, err := st.AddReader(st.Tracks()[0], &countSink{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	time.Sleep(time.Second)
	if n := src.asked.Load(); n > 1 {
		t.Errorf("a WHEP-only stream asked its publisher for %d keyframes in 1 s, want at most the join's", n)
	}
	if c := st.Stats().Tracks[0].CadenceRequests; c != 0 {
		t.Errorf("cadence requests = %d for a stream without frame readers", c)
	}

	// Once the last frame reader has left, the cadence stops too.
	fr, err := New(Params{Logger: testLogger()}).Subscribe(st, st.Tracks()[0])
	if err != nil {
		t.Fatal(err)
	}
	fr.Close()
	before := st.Stats().Tracks[0].CadenceRequests
	<-done
	if c := st.Stats().Tracks[0].CadenceRequests; c != before {
		t.Errorf("cadence requests went from %d to %d after the frame reader left", before, c)
	}
}

type countSink struct{ n atomic.Int64 }

func (s *countSink) WriteRTP(*rtp.Header, []byte) error                     { s.n.Add(1); return nil }
func (s *countSink) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }

// slowSource answers a keyframe request only after a delay, as a browser
// short of CPU does.
type slowSource struct {
	delay time.Duration
	mu    sync.Mutex
	due   time.Time
}

func (s *slowSource) RequestKeyframe(int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.due.IsZero() {
		s.due = time.Now().Add(s.delay)
	}
}

func (s *slowSource) keyframeDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.due.IsZero() || time.Now().Before(s.due) {
		return false
	}
	s.due = time.Time{}
	return true
}

// A publisher that answers late gets asked earlier: after the first late
// answer its GOPs stay within keyframe-max-interval.
func TestKeyframeCadenceLearnsSlowAnswers(t *testing.T) {
	const maxInterval = time.Second
	const frame = 3000
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 2,
		KeyframeInterval: 50 * time.Millisecond, KeyframeMaxInterval: maxInterval})
	defer hub.Close()
	src := &slowSource{delay: 250 * time.Millisecond}
	pub, err := hub.Publish("room/slow", []relay.TrackInfo{h264Info}, src)
	if err != nil {
		t.Fatal(err)
	}
	st := pub.Stream()
	r, err := New(Params{Logger: testLogger()}).Subscribe(st, st.Tracks()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5500*time.Millisecond)
	defer cancel()
	var gaps []int64
	done := make(chan struct{})
	go func() { defer close(done); gaps = keyframeGaps(ctx, r) }()
	h := rtp.Header{Version: 2, PayloadType: 96, Marker: true, SequenceNumber: 100, Timestamp: 9000}
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
loop:
	for i := 0; ; i++ {
		p := []byte{0x41, 0x9a, byte(i), byte(i >> 8)}
		if i == 0 || src.keyframeDue() {
			p[0] = 0x65
		}
		pub.WriteRTP(0, &h, p)
		h.SequenceNumber++
		h.Timestamp += 3000
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	<-done
	if len(gaps) < 4 {
		t.Fatalf("saw %d keyframe gaps, want at least 4: %v", len(gaps), gaps)
	}
	limit := int64(maxInterval.Seconds()*90000) + 2*frame
	// The first request is made with the default lead and answered late;
	// from the second GOP on the lead covers the publisher's delay.
	for _, d := range gaps[2:] {
		if d > limit {
			t.Errorf("GOP of %.0f ms after learning a 250 ms answer time, want <= %v (+2 frames): %v", float64(d)/90, maxInterval, gaps)
			break
		}
	}
	t.Logf("GOPs (ticks): %v", gaps)
}
