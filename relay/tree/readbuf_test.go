package tree

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

type noSource struct{}

func (noSource) RequestKeyframe(int) {}

type sink struct {
	mu  sync.Mutex
	got [][]byte
}

func (s *sink) WriteRTP(_ *rtp.Header, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, bytes.Clone(payload))
	return nil
}

func (s *sink) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }

// A relay link reuses one read buffer for every packet it forwards. A
// viewer joining after the packets were read starts from the relay's GOP
// cache and must get them as the parent sent them, not what later reads
// left in the buffer.
func TestLateViewerGetsForwardedPacketsReadBefore(t *testing.T) {
	hub := relay.NewHub(relay.Params{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer hub.Close()
	pub, err := hub.Publish("t/cam", []relay.TrackInfo{{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000}}}, noSource{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := hub.Get("t/cam")

	// A keyframe (SPS, IDR) and P frames, each payload its own length and bytes.
	var sent, raw [][]byte
	for k := range 40 {
		nal, n := byte(0x41), 50+(k*97)%1200
		switch k {
		case 0:
			nal, n = 0x67, 20
		case 1:
			nal = 0x65
		}
		pl := []byte{nal}
		for i := range n {
			pl = append(pl, byte(k*31+i))
		}
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(1000 + k),
			Timestamp: uint32(90000 + 3000*max(k-1, 0)), SSRC: 0x1234, Marker: k > 0}
		b, err := (&rtp.Packet{Header: h, Payload: pl}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sent, raw = append(sent, pl), append(raw, b)
	}
	// The remote track's Read: the buffer it is given is overwritten with
	// 0xEE before each packet and at the end, so whatever still pointed
	// into it reads garbage.
	next, arrived := 0, 0
	read := func(b []byte) (int, interceptor.Attributes, error) {
		for i := range b {
			b[i] = 0xEE
		}
		if next == len(raw) {
			return 0, nil, io.EOF
		}
		next++
		return copy(b, raw[next-1]), nil, nil
	}
	forwardRTP(read, pub, 0, func() { arrived++ })
	if arrived != len(raw) {
		t.Errorf("arrived called %d times for %d packets", arrived, len(raw))
	}

	s := &sink{}
	r, err := st.AddReader(st.Tracks()[0], s)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got [][]byte
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		got = s.got
		s.mu.Unlock()
		if len(got) >= len(sent) {
			break
		}
	}
	if len(got) != len(sent) {
		t.Fatalf("the late viewer got %d packets from the GOP cache, want %d", len(got), len(sent))
	}
	for k := range got {
		if !bytes.Equal(got[k], sent[k]) {
			t.Fatalf("packet %d is not what was sent (%d bytes, starting % x; sent %d bytes, starting % x)",
				k, len(got[k]), got[k][:min(8, len(got[k]))], len(sent[k]), sent[k][:8])
		}
	}
}
