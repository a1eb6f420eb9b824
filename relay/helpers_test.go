package relay_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	h264Info = relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000}}
	vp8Info  = relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeVP8, ClockRate: 90000}}
	vp9Info  = relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeVP9, ClockRate: 90000}}
	opusInfo = relay.TrackInfo{Kind: codec.Audio, Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}}
)

// newHub starts a hub with quiet logging that is closed when the test ends.
func newHub(t *testing.T, p relay.Params) *relay.Hub {
	t.Helper()
	if p.Logger == nil {
		p.Logger = quietLogger()
	}
	h := relay.NewHub(p)
	t.Cleanup(h.Close)
	return h
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeSource records the publisher's keyframe requests per track index.
type fakeSource struct {
	mu   sync.Mutex
	reqs []int
}

func (s *fakeSource) RequestKeyframe(i int) {
	s.mu.Lock()
	s.reqs = append(s.reqs, i)
	s.mu.Unlock()
}

func (s *fakeSource) requests() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.reqs...)
}

type recPkt struct {
	Header  rtp.Header
	Payload []byte
}

type recSR struct {
	NTP, RTP        uint64
	Packets, Octets uint32
}

// fakeSink records what a reader was sent. With a gate it blocks every
// WriteRTP until the gate is opened, like a viewer whose socket is stuck.
type fakeSink struct {
	mu   sync.Mutex
	pkts []recPkt
	srs  []recSR

	gate    chan struct{} // nil: never blocks
	entered chan struct{} // signalled when a WriteRTP is blocked on the gate
}

func newSink() *fakeSink { return &fakeSink{} }

func newBlockingSink() *fakeSink {
	return &fakeSink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
}

func (s *fakeSink) WriteRTP(h *rtp.Header, payload []byte) error {
	if s.gate != nil {
		select {
		case <-s.gate:
		default:
			select {
			case s.entered <- struct{}{}:
			default:
			}
			<-s.gate
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts = append(s.pkts, recPkt{Header: *h, Payload: append([]byte(nil), payload...)})
	return nil
}

func (s *fakeSink) WriteSenderReport(ntp uint64, rtpTime uint32, packets, octets uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srs = append(s.srs, recSR{NTP: ntp, RTP: uint64(rtpTime), Packets: packets, Octets: octets})
	return nil
}

func (s *fakeSink) open() { close(s.gate) }

func (s *fakeSink) packets() []recPkt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recPkt(nil), s.pkts...)
}

func (s *fakeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

func (s *fakeSink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts = nil
	s.srs = nil
}

func (s *fakeSink) senderReports() []recSR {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recSR(nil), s.srs...)
}

// waitCount waits until the sink has received n packets and then checks
// that no more than n arrive.
func (s *fakeSink) waitCount(t *testing.T, n int) []recPkt {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d packets; got %s", n, ids(payloadsOf(s.packets())))
		}
		time.Sleep(time.Millisecond)
	}
	p := s.packets()
	if len(p) != n {
		t.Fatalf("sink got %d packets, want %d", len(p), n)
	}
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// sender writes synthetic RTP for one track of a publication. Every packet
// is a whole frame; payloads carry a unique number so that packets can be
// told apart after the fan-out.
type sender struct {
	pub    *relay.Publication
	idx    int
	seq    uint16
	ts     uint32
	tsStep uint32
	audio  bool
}

func newVideoSender(pub *relay.Publication, idx int, seq uint16, ts uint32) *sender {
	return &sender{pub: pub, idx: idx, seq: seq, ts: ts, tsStep: 3000}
}

func newAudioSender(pub *relay.Publication, idx int, seq uint16, ts uint32) *sender {
	return &sender{pub: pub, idx: idx, seq: seq, ts: ts, tsStep: 960, audio: true}
}

var payloadIDs atomic.Uint32

// payload returns a synthetic H.264 (or Opus) payload: first byte 0x65 for
// an IDR slice, 0x41 for a non-IDR slice, then a unique id.
func payload(key, audio bool) []byte {
	b := make([]byte, 9)
	switch {
	case audio:
		b[0] = 0xfc
	case key:
		b[0] = 0x65
	default:
		b[0] = 0x41
	}
	binary.BigEndian.PutUint32(b[1:], payloadIDs.Add(1))
	binary.BigEndian.PutUint32(b[5:], 0xdeadbeef)
	return b
}

// send writes one packet with the given payload in a new frame.
func (s *sender) send(p []byte) rtp.Header {
	h := rtp.Header{
		Version:        2,
		Marker:         true,
		PayloadType:    96,
		SequenceNumber: s.seq,
		Timestamp:      s.ts,
		SSRC:           0x11223344,
	}
	if err := h.SetExtension(3, []byte{1, 2}); err != nil {
		panic(err)
	}
	if s.audio {
		h.PayloadType = 111
	}
	s.pub.WriteRTP(s.idx, &h, p)
	s.seq++
	s.ts += s.tsStep
	return h
}

func (s *sender) key() []byte {
	p := payload(true, s.audio)
	s.send(p)
	return p
}

func (s *sender) delta() []byte {
	p := payload(false, s.audio)
	s.send(p)
	return p
}

// gop sends a keyframe and n delta frames and returns their payloads.
func (s *sender) gop(n int) [][]byte {
	out := [][]byte{s.key()}
	for range n {
		out = append(out, s.delta())
	}
	return out
}

// assertContiguous checks that sequence numbers increase by one.
func assertContiguous(t *testing.T, who string, pkts []recPkt) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		if got, want := pkts[i].Header.SequenceNumber, pkts[i-1].Header.SequenceNumber+1; got != want {
			t.Fatalf("%s: packet %d has sequence number %d after %d (want %d)", who, i, got, pkts[i-1].Header.SequenceNumber, want)
		}
	}
}

// assertPayloads checks that the sink received exactly these payloads, in
// this order.
func assertPayloads(t *testing.T, who string, pkts []recPkt, want [][]byte) {
	t.Helper()
	if len(pkts) != len(want) {
		t.Fatalf("%s: got %d packets, want %d\ngot:  %s\nwant: %s", who, len(pkts), len(want), ids(payloadsOf(pkts)), ids(want))
	}
	for i := range want {
		if string(pkts[i].Payload) != string(want[i]) {
			t.Fatalf("%s: packet %d is % x, want % x\ngot:  %s\nwant: %s", who, i, pkts[i].Payload, want[i], ids(payloadsOf(pkts)), ids(want))
		}
	}
}

func payloadsOf(pkts []recPkt) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = p.Payload
	}
	return out
}

// ids renders payloads as K<id> / d<id> for failure messages.
func ids(ps [][]byte) string {
	s := ""
	for _, p := range ps {
		if len(p) < 5 {
			s += fmt.Sprintf("?% x ", p)
			continue
		}
		kind := "d"
		if p[0] == 0x65 {
			kind = "K"
		} else if p[0] == 0xfc {
			kind = "a"
		}
		s += fmt.Sprintf("%s%d ", kind, binary.BigEndian.Uint32(p[1:5]))
	}
	return s
}

func publish(t testing.TB, h *relay.Hub, path string, infos ...relay.TrackInfo) (*relay.Publication, *fakeSource) {
	t.Helper()
	src := &fakeSource{}
	p, err := h.Publish(path, infos, src)
	if err != nil {
		t.Fatalf("Publish(%s): %v", path, err)
	}
	return p, src
}

// newStream publishes path with infos on a new hub made with p (closed
// with the test) and returns the hub, the publication, its fake source
// and the stream.
func newStream(t *testing.T, p relay.Params, path string, infos ...relay.TrackInfo) (*relay.Hub, *relay.Publication, *fakeSource, *relay.Stream) {
	t.Helper()
	h := newHub(t, p)
	pub, src := publish(t, h, path, infos...)
	s, ok := h.Get(path)
	if !ok {
		t.Fatalf("%s not in the hub after Publish", path)
	}
	return h, pub, src, s
}

func addReader(t *testing.T, s *relay.Stream, track int) (*relay.Reader, *fakeSink) {
	t.Helper()
	sink := newSink()
	r, err := s.AddReader(s.Tracks()[track], sink)
	if err != nil {
		t.Fatalf("AddReader: %v", err)
	}
	t.Cleanup(r.Close)
	return r, sink
}
