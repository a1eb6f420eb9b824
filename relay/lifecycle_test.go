package relay_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/relay"
)

type eventLog struct {
	mu     sync.Mutex
	events []relay.Event
}

func (l *eventLog) add(e relay.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// lifecycle returns the non-reader events in order.
func (l *eventLog) lifecycle() []relay.EventType {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []relay.EventType
	for _, e := range l.events {
		if e.Type != relay.ReaderJoined && e.Type != relay.ReaderLeft {
			out = append(out, e.Type)
		}
	}
	return out
}

func assertEvents(t *testing.T, l *eventLog, want ...relay.EventType) {
	t.Helper()
	got := l.lifecycle()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// assertTimestampGap checks that the output timestamp moved forward by about
// the wall time between two publishers (at least min ticks, less than 10 s).
func assertTimestampGap(t *testing.T, who string, before, after recPkt, minTicks, clock uint32) {
	t.Helper()
	d := after.Header.Timestamp - before.Header.Timestamp
	if d < minTicks || d >= 10*clock {
		t.Errorf("%s: timestamp moved from %d to %d (+%d) across the reconnect, want at least +%d and less than 10 s",
			who, before.Header.Timestamp, after.Header.Timestamp, d, minTicks)
	}
}

// A publisher that reconnects within the grace period continues the stream:
// viewers stay attached and see one stream, with gap-free sequence numbers
// and timestamps that keep advancing, whatever numbering the new publisher
// starts with. When nobody comes back the stream ends.
func TestPublisherReconnectWithinGraceContinuesStream(t *testing.T) {
	const grace = 500 * time.Millisecond
	events := &eventLog{}
	h := newHub(t, relay.Params{Grace: grace, Workers: 2})
	h.Subscribe(events.add)
	a, _ := publish(t, h, "room/cam", h264Info, opusInfo)
	s, _ := h.Get("room/cam")
	_, video := addReader(t, s, 0)
	_, audio := addReader(t, s, 1)

	va := newVideoSender(a, 0, 1000, 5000)
	aa := newAudioSender(a, 1, 2000, 7000)
	wantV := va.gop(9)
	var wantA [][]byte
	for range 10 {
		wantA = append(wantA, aa.key())
	}
	video.waitCount(t, len(wantV))
	audio.waitCount(t, len(wantA))

	a.End("network change")
	left := time.Now()
	if got, ok := h.Get("room/cam"); !ok || got != s {
		t.Fatal("stream gone right after its publisher left")
	}
	if s.Live() {
		t.Error("stream still live after its publisher left")
	}
	va.key() // late packets of the ended publication are not forwarded
	aa.key()

	time.Sleep(30 * time.Millisecond)
	// The new publisher lists its tracks in another order and starts its
	// numbering anywhere.
	b, _ := publish(t, h, "room/cam", opusInfo, h264Info)
	if b.Stream() != s {
		t.Fatal("new publisher did not continue the stream")
	}
	if !s.Live() {
		t.Error("stream not live after the publisher came back")
	}
	vb := newVideoSender(b, 1, 40000, 12345678)
	ab := newAudioSender(b, 0, 60000, 4000000000)
	fromB := vb.gop(9)
	var audioB [][]byte
	for range 10 {
		audioB = append(audioB, ab.key())
	}
	gap := time.Since(left)

	got := video.waitCount(t, len(wantV)+len(fromB))
	assertPayloads(t, "video reader", got, append(append([][]byte{}, wantV...), fromB...))
	assertContiguous(t, "video reader", got)
	assertTimestampGap(t, "video reader", got[len(wantV)-1], got[len(wantV)], uint32(25*90), 90000)
	for i := len(wantV) + 1; i < len(got); i++ {
		if got[i].Header.Timestamp-got[i-1].Header.Timestamp != 3000 {
			t.Fatalf("video reader: frame spacing of the new publisher not kept at packet %d", i)
		}
	}
	gotA := audio.waitCount(t, len(wantA)+len(audioB))
	assertPayloads(t, "audio reader", gotA, append(append([][]byte{}, wantA...), audioB...))
	assertContiguous(t, "audio reader", gotA)
	assertTimestampGap(t, "audio reader", gotA[len(wantA)-1], gotA[len(wantA)], uint32(25*48), 48000)
	t.Logf("reconnect after %v", gap)

	// The publisher leaves for good: after the grace period the stream
	// ends and its path is free.
	b.End("bye")
	if isClosed(s.Done()) {
		t.Fatal("stream ended without a grace period")
	}
	waitClosed(t, "the stream to end after the grace period", s.Done())
	if _, ok := h.Get("room/cam"); ok {
		t.Error("ended stream still found by Get")
	}
	if len(h.Streams()) != 0 {
		t.Error("ended stream still listed")
	}
	if _, err := s.AddReader(s.Tracks()[0], newSink()); !errors.Is(err, relay.ErrNotFound) {
		t.Errorf("AddReader on an ended stream: %v, want ErrNotFound", err)
	}
	assertEvents(t, events, relay.StreamStarted, relay.PublisherLeft, relay.PublisherBack, relay.PublisherLeft, relay.StreamEnded)

	// The path can be published again, as a new stream.
	c, _ := publish(t, h, "room/cam", h264Info)
	if c.Stream() == s {
		t.Error("publishing an ended path reused the ended stream")
	}
}

func TestStreamEndsWhenGracePassesWithoutPublisher(t *testing.T) {
	const grace = 50 * time.Millisecond
	h := newHub(t, relay.Params{Grace: grace})
	a, _ := publish(t, h, "room/cam", h264Info)
	s := a.Stream()
	start := time.Now()
	a.End("bye")
	a.End("twice") // idempotent
	waitClosed(t, "the stream to end", s.Done())
	if d := time.Since(start); d < grace {
		t.Errorf("stream ended after %v, before the grace period of %v", d, grace)
	}
	if _, ok := h.Get("room/cam"); ok {
		t.Error("ended stream still found by Get")
	}
}

func TestNegativeGraceEndsStreamAtOnce(t *testing.T) {
	h := newHub(t, relay.Params{Grace: -1})
	a, _ := publish(t, h, "room/cam", h264Info)
	a.End("bye")
	waitClosed(t, "the stream to end", a.Stream().Done())
	waitFor(t, "the path to be free", func() bool { _, ok := h.Get("room/cam"); return !ok })
}

// A second publisher on a live path is refused.
func TestPublishWhileLive(t *testing.T) {
	h := newHub(t, relay.Params{})
	a, _ := publish(t, h, "room/cam", h264Info)
	_, err := h.Publish("room/cam", []relay.TrackInfo{h264Info}, &fakeSource{})
	if !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("second Publish: %v, want ErrAlreadyLive", err)
	}
	a.SetStalled(true)
	a.SetStalled(false) // recovered before anybody took over
	if _, err := h.Publish("room/cam", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrAlreadyLive) {
		t.Fatalf("Publish after the publisher recovered: %v, want ErrAlreadyLive", err)
	}
	if isClosed(a.Superseded()) {
		t.Fatal("refused publisher superseded the live one")
	}
	if _, err := h.Publish("room/other", nil, &fakeSource{}); !errors.Is(err, relay.ErrNoTracks) {
		t.Errorf("Publish without tracks: %v, want ErrNoTracks", err)
	}
}

// A stalled publisher (ICE lost) can be replaced at once by a reconnecting
// one: the old session is told to go away and viewers continue.
func TestStalledPublisherIsTakenOver(t *testing.T) {
	h := newHub(t, relay.Params{Grace: time.Minute})
	a, _ := publish(t, h, "room/cam", h264Info)
	s := a.Stream()
	_, sink := addReader(t, s, 0)
	va := newVideoSender(a, 0, 10, 10)
	fromA := va.gop(4)
	sink.waitCount(t, len(fromA))

	a.SetStalled(true)
	b, _ := publish(t, h, "room/cam", h264Info)
	waitClosed(t, "the stalled publication to be superseded", a.Superseded())
	if b.Stream() != s {
		t.Fatal("takeover did not continue the stream")
	}
	if isClosed(b.Superseded()) || isClosed(s.Done()) {
		t.Fatal("new publication or stream ended by the takeover")
	}
	va.gop(3) // the old publisher's packets no longer reach viewers
	vb := newVideoSender(b, 0, 40000, 12345678)
	fromB := vb.gop(4)
	got := sink.waitCount(t, len(fromA)+len(fromB))
	assertPayloads(t, "reader", got, append(append([][]byte{}, fromA...), fromB...))
	assertContiguous(t, "reader", got)

	// The old session closing afterwards does not end the new one.
	a.End("closed")
	if !s.Live() {
		t.Fatal("old publication's End stopped the new one")
	}
	more := vb.gop(2)
	sink.waitCount(t, len(fromA)+len(fromB)+len(more))
}

// A publisher that comes back with another video codec cannot continue the
// viewers' negotiated tracks: the old stream ends and a new one starts.
func TestIncompatibleCodecEndsOldStream(t *testing.T) {
	for _, how := range []string{"stalled", "in grace"} {
		t.Run(how, func(t *testing.T) {
			h := newHub(t, relay.Params{Grace: time.Minute})
			a, _ := publish(t, h, "room/cam", h264Info, opusInfo)
			old := a.Stream()
			_, sink := addReader(t, old, 0)
			newVideoSender(a, 0, 1, 1).gop(2)
			sink.waitCount(t, 3)
			if how == "stalled" {
				a.SetStalled(true)
			} else {
				a.End("bye")
			}

			b, _ := publish(t, h, "room/cam", vp8Info, opusInfo)
			waitClosed(t, "the old stream to end", old.Done())
			if how == "stalled" {
				waitClosed(t, "the old publication to be superseded", a.Superseded())
			}
			if b.Stream() == old {
				t.Fatal("incompatible publisher continued the old stream")
			}
			if got, ok := h.Get("room/cam"); !ok || got != b.Stream() {
				t.Fatal("path does not lead to the new stream")
			}
			if isClosed(b.Stream().Done()) || !b.Stream().Live() {
				t.Fatal("new stream is not live")
			}
			// VP8 key frame: S=1, PID=0, P=0.
			vb := newVideoSender(b, 0, 1, 1)
			vb.send([]byte{0x10, 0x10, 0x01, 0x02})
			_, nsink := addReader(t, b.Stream(), 0)
			nsink.waitCount(t, 1)
			if n := sink.count(); n != 3 {
				t.Fatalf("reader of the ended stream got %d packets, want 3", n)
			}
		})
	}
}

// A returning publisher that adds a kind the stream lacked continues it;
// the new track is added.
func TestReconnectAddingAudioContinuesStream(t *testing.T) {
	h := newHub(t, relay.Params{Grace: time.Minute})
	a, _ := publish(t, h, "room/cam", h264Info)
	s := a.Stream()
	a.End("bye")
	b, _ := publish(t, h, "room/cam", h264Info, opusInfo)
	if b.Stream() != s {
		t.Fatal("publisher adding audio did not continue the stream")
	}
	if n := len(s.Tracks()); n != 2 {
		t.Fatalf("stream has %d tracks, want 2", n)
	}
}

// Viewers beyond the stream's limit are refused; a viewer leaving makes
// room for another.
func TestMaxViewersPerStream(t *testing.T) {
	h := newHub(t, relay.Params{MaxViewersPerStream: 2})
	a, _ := publish(t, h, "room/cam", h264Info)
	s := a.Stream()
	for i := range 2 {
		if err := s.Join(); err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
	}
	if err := s.Join(); !errors.Is(err, relay.ErrTooManyReaders) {
		t.Fatalf("third viewer: %v, want ErrTooManyReaders", err)
	}
	if st := s.Stats(); st.Readers != 2 || !st.Live || st.Path != "room/cam" {
		t.Errorf("stats %+v, want 2 viewers, live", st)
	}
	s.Leave()
	if err := s.Join(); err != nil {
		t.Fatalf("viewer after one left: %v", err)
	}
	s.Leave()
	s.Leave()
	if st := s.Stats(); st.Readers != 0 {
		t.Errorf("%d viewers after all left", st.Readers)
	}
	a.End("bye")
}

// Closing the hub ends every stream, releases publishers and viewers, and
// stops every goroutine it started.
func TestHubCloseEndsEverything(t *testing.T) {
	h := relay.NewHub(relay.Params{Workers: 4, Grace: time.Minute, Logger: quietLogger()})
	var pubs []*relay.Publication
	var streams []*relay.Stream
	var readers []*relay.Reader
	for i := range 3 {
		p, _ := publish(t, h, fmt.Sprintf("room/cam%d", i), h264Info, opusInfo)
		pubs = append(pubs, p)
		streams = append(streams, p.Stream())
		for range 3 {
			r, err := p.Stream().AddReader(p.Stream().Tracks()[0], newSink())
			if err != nil {
				t.Fatal(err)
			}
			readers = append(readers, r)
		}
		newVideoSender(p, 0, 1, 1).gop(5)
	}
	pubs[2].End("in grace")

	h.Close()
	for i, s := range streams {
		if !isClosed(s.Done()) {
			t.Errorf("stream %d not ended by Close", i)
		}
	}
	for i, p := range pubs[:2] {
		if !isClosed(p.Superseded()) {
			t.Errorf("publication %d not released by Close", i)
		}
	}
	if len(h.Streams()) != 0 {
		t.Error("streams listed after Close")
	}
	if _, ok := h.Get("room/cam0"); ok {
		t.Error("stream found after Close")
	}
	if _, err := h.Publish("room/new", []relay.TrackInfo{h264Info}, &fakeSource{}); !errors.Is(err, relay.ErrHubClosed) {
		t.Errorf("Publish after Close: %v, want ErrHubClosed", err)
	}
	// Late calls from sessions that have not noticed yet are harmless.
	newVideoSender(pubs[0], 0, 100, 100).gop(3)
	pubs[0].WriteSenderReport(0, 1, 2)
	pubs[0].End("late")
	for _, r := range readers {
		r.RequestKeyframe()
		r.Retransmit([]uint16{1, 2})
		r.Close()
	}
	h.Close()
	goleak.VerifyNone(t)
}
