package frames

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	h264Info = relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
		Fmtp: "packetization-mode=1;profile-level-id=42e01f"}}
	opusInfo = relay.TrackInfo{Kind: codec.Audio, Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}}
)

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// feed publishes the test clip's first n video frames (and the audio of
// the same span) through packetizers, paced at speed times real time.
func feed(ctx context.Context, t *testing.T, pub *relay.Publication, n int, speed float64) [][][]byte {
	t.Helper()
	video, err := clip.LoadH264("../../testdata/clip.h264")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := clip.LoadOpus("../../testdata/clip.ogg")
	if err != nil {
		t.Fatal(err)
	}
	vp, ap := NewPacketizer(codec.MimeH264, 96), NewPacketizer(codec.MimeOpus, 111)
	var sent [][][]byte
	var vts, ats uint32 = 1000, 5000
	var vt, at time.Duration
	start := time.Now()
	ai := 0
	for i := 0; i < n && i < len(video); i++ {
		var au h264.AnnexB
		if err := au.Unmarshal(video[i].Data); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, au)
		for _, p := range vp.Packetize(vts, au) {
			pub.WriteRTP(0, &p.Header, p.Payload)
		}
		vts += uint32(video[i].Duration * 90000 / time.Second)
		vt += video[i].Duration
		for ai < len(audio) && at < vt {
			for _, p := range ap.Packetize(ats, [][]byte{audio[ai].Data}) {
				pub.WriteRTP(1, &p.Header, p.Payload)
			}
			ats += uint32(audio[ai].Duration * 48000 / time.Second)
			at += audio[ai].Duration
			ai++
		}
		if d := time.Duration(float64(vt)/speed) - time.Since(start); d > 0 {
			select {
			case <-ctx.Done():
				return sent
			case <-time.After(d):
			}
		}
	}
	return sent
}

func TestSharedDepacketizer(t *testing.T) {
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 2})
	defer hub.Close()
	pub, err := hub.Publish("room/cam", []relay.TrackInfo{h264Info, opusInfo}, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	st := pub.Stream()
	tracks := st.Tracks()
	l := New(Params{Logger: testLogger()})
	v1, err := l.Subscribe(st, tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	v2, err := l.Subscribe(st, tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	a1, err := l.Subscribe(st, tracks[1])
	if err != nil {
		t.Fatal(err)
	}
	if l.Active() != 2 {
		t.Fatalf("active depacketizers = %d, want 2 (one per track)", l.Active())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent := feed(ctx, t, pub, 45, 4)
	time.Sleep(100 * time.Millisecond)

	for _, r := range []*Reader{v1, v2} {
		var got []*Frame
	drain:
		for {
			select {
			case f := <-r.Frames():
				got = append(got, f)
			default:
				break drain
			}
		}
		if len(got) < len(sent)-1 {
			t.Fatalf("reader got %d frames, sent %d", len(got), len(sent))
		}
		if !got[0].Key {
			t.Fatalf("first frame is not a keyframe")
		}
		for i, f := range got {
			if i > 0 && f.PTS <= got[i-1].PTS {
				t.Fatalf("frame %d: PTS %d after %d", i, f.PTS, got[i-1].PTS)
			}
			if i < len(sent) && !sameUnits(f.Units, sent[i]) {
				t.Fatalf("frame %d differs from what was sent (%d vs %d units)", i, len(f.Units), len(sent[i]))
			}
		}
		if d := got[1].PTS - got[0].PTS; d < 2990 || d > 3010 {
			t.Fatalf("PTS step %d, want 3000", d)
		}
	}
	n := 0
	for len(a1.Frames()) > 0 {
		<-a1.Frames()
		n++
	}
	if n < 60 {
		t.Fatalf("audio frames: %d", n)
	}
	if z := time.Since(v1.Zero()); z < 0 || z > 5*time.Second {
		t.Fatalf("zero %v ago", z)
	}
	v1.Close()
	v2.Close()
	if l.Active() != 1 {
		t.Fatalf("active = %d after the video readers left, want 1", l.Active())
	}
	a1.Close()
	if l.Active() != 0 {
		t.Fatalf("active = %d after all readers left", l.Active())
	}
}

func sameUnits(a, b [][]byte) bool {
	// The clip may carry access unit delimiters, which frames drop.
	var bb [][]byte
	for _, u := range b {
		if len(u) > 0 && h264.NALUType(u[0]&0x1f) != h264.NALUTypeAccessUnitDelimiter {
			bb = append(bb, u)
		}
	}
	if len(a) != len(bb) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], bb[i]) {
			return false
		}
	}
	return true
}

func TestSlowReaderResyncsAtKeyframe(t *testing.T) {
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 1})
	defer hub.Close()
	pub, err := hub.Publish("room/cam", []relay.TrackInfo{h264Info}, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	st := pub.Stream()
	l := New(Params{Logger: testLogger(), Queue: 8})
	fast, err := l.Subscribe(st, st.Tracks()[0])
	if err != nil {
		t.Fatal(err)
	}
	slow, err := l.Subscribe(st, st.Tracks()[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fastN := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-fast.Frames():
				n++
			case <-fast.Done():
				fastN <- n
				return
			}
		}
	}()
	sent := feed(ctx, t, pub, 150, 8) // 5 s of clip: keyframes every 2 s or so
	time.Sleep(100 * time.Millisecond)
	fast.Close()
	if n := <-fastN; n < len(sent)-1 {
		t.Fatalf("fast reader got %d of %d frames: the slow one held it back", n, len(sent))
	}
	if slow.Dropped() == 0 {
		t.Fatal("slow reader dropped nothing")
	}
	// What the slow reader has is a run that starts at a keyframe.
	first := <-slow.Frames()
	if !first.Key {
		t.Fatal("slow reader's queue does not start at a keyframe")
	}
	slow.Close()
	if l.Active() != 0 {
		t.Fatal("depacketizer still running")
	}
}

func TestStreamEndEndsReaders(t *testing.T) {
	hub := relay.NewHub(relay.Params{Logger: testLogger(), Workers: 1, Grace: -1})
	pub, err := hub.Publish("room/cam", []relay.TrackInfo{opusInfo}, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	l := New(Params{Logger: testLogger()})
	r, err := l.Subscribe(pub.Stream(), pub.Stream().Tracks()[0])
	if err != nil {
		t.Fatal(err)
	}
	pub.End("test")
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("reader not ended with the stream")
	}
	r.Close()
	hub.Close()
}
