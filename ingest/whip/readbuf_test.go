package whip

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
	"github.com/livegate/livegate/relay/simulcast"
)

// The readers reuse one read buffer for every packet. These tests check
// what a viewer would see if anything the relay kept still pointed into it:
// a viewer joining after the packets were read starts from the relay's GOP
// cache, and must get them as they were sent.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type noSource struct{}

func (noSource) RequestKeyframe(int) {}

// feed is a track's Read over a list of packets. It fills the whole buffer
// it is given with 0xEE before copying a packet in, and again before
// reporting the end, so that a packet anything still reads from the buffer
// after the next read has become garbage.
type feed struct {
	pkts [][]byte
	next int
}

func (f *feed) read(b []byte) (int, interceptor.Attributes, error) {
	for i := range b {
		b[i] = 0xEE
	}
	if f.next == len(f.pkts) {
		return 0, nil, io.EOF
	}
	n := copy(b, f.pkts[f.next])
	f.next++
	return n, nil, nil
}

// frames makes one RTP packet per payload, 30 frames a second; the first
// two payloads share the first frame's timestamp (parameter sets and the
// picture of a keyframe).
func frames(t *testing.T, payloads [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	for k, pl := range payloads {
		frame := max(k-1, 0)
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(1000 + k),
			Timestamp: uint32(90000 + 3000*frame), SSRC: 0x1234, Marker: k > 0}
		raw, err := (&rtp.Packet{Header: h, Payload: pl}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// filler is n bytes that differ from packet to packet.
func filler(k, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(k*31 + i)
	}
	return b
}

// h264GOP is a keyframe (SPS, then IDR) and P frames, every payload of its
// own length.
func h264GOP(n int) [][]byte {
	out := [][]byte{append([]byte{0x67}, filler(0, 20)...)}
	out = append(out, append([]byte{0x65}, filler(1, 1100)...))
	for k := 2; k < n; k++ {
		out = append(out, append([]byte{0x41}, filler(k, 50+(k*97)%1200)...))
	}
	return out
}

// vp8GOP is a keyframe and inter frames, each with a picture ID (which
// the simulcast selector rewrites in place).
func vp8GOP(n int) [][]byte {
	var out [][]byte
	for k := range n {
		desc := []byte{0x90, 0x80, 0x80 | byte(k>>8), byte(k)}
		frame := []byte{0x01, 0x00, 0x00} // inter frame
		if k == 0 {
			frame = []byte{0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00} // 320x180
		}
		out = append(out, append(append(desc, frame...), filler(k, 40+(k*97)%1200)...))
	}
	return out
}

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

// lateViewer joins track of st now and returns the first want payloads it
// gets (fewer if they do not come within 5 s).
func lateViewer(t *testing.T, st *relay.Stream, track *relay.Track, want int) [][]byte {
	t.Helper()
	s := &sink{}
	r, err := st.AddReader(track, s)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.got)
		s.mu.Unlock()
		if n >= want {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[:min(len(s.got), want)]
}

// same reports the first packet a viewer got differently from what was
// sent; skip bytes at the start of each payload are not compared (a
// picture ID the selector renumbers).
func same(t *testing.T, who string, got, sent [][]byte, skip int) {
	t.Helper()
	if len(got) != len(sent) {
		t.Errorf("%s: got %d packets from the GOP cache, want %d", who, len(got), len(sent))
	}
	for k := range min(len(got), len(sent)) {
		g, w := got[k], sent[k]
		if len(g) != len(w) || !bytes.Equal(g[min(skip, len(g)):], w[min(skip, len(w)):]) {
			t.Errorf("%s: packet %d is not what was sent (%d bytes, starting % x; sent %d bytes, starting % x)",
				who, k, len(g), g[:min(len(g), 8)], len(w), w[:min(len(w), 8)])
			return
		}
	}
}

func publish(t *testing.T, mime string) (*relay.Publication, *relay.Stream) {
	t.Helper()
	hub := relay.NewHub(relay.Params{Logger: quiet()})
	t.Cleanup(hub.Close)
	pub, err := hub.Publish("t/cam", []relay.TrackInfo{{Kind: codec.Video, Codec: relay.Codec{MimeType: mime, ClockRate: 90000}}}, noSource{})
	if err != nil {
		t.Fatal(err)
	}
	st, ok := hub.Get("t/cam")
	if !ok {
		t.Fatal("no stream after Publish")
	}
	return pub, st
}

func TestLateViewerGetsPacketsReadBefore(t *testing.T) {
	pub, st := publish(t, codec.MimeH264)
	sent := h264GOP(40)
	readRTP((&feed{pkts: frames(t, sent)}).read, pub, 0)
	same(t, "late viewer", lateViewer(t, st, st.Tracks()[0], len(sent)), sent, 0)
}

func TestLateViewerGetsLayerPacketsReadBefore(t *testing.T) {
	for _, tc := range []struct {
		mime string
		gop  [][]byte
		skip int // the selector renumbers VP8 picture IDs
	}{
		{codec.MimeH264, h264GOP(40), 0},
		{codec.MimeVP8, vp8GOP(40), 4},
	} {
		t.Run(tc.mime, func(t *testing.T) {
			pub, st := publish(t, tc.mime)
			sim := &simTrack{pub: pub, mime: tc.mime}
			sim.sel = simulcast.New(simulcast.Params{
				MimeType: tc.mime, ClockRate: 90000, Logger: quiet(),
				Write:             func(h *rtp.Header, p []byte) { pub.WriteRTP(0, h, p) },
				WriteSenderReport: func(uint64, uint32) {},
				RequestKeyframe:   func(uint32) {},
			})
			layer := sim.sel.AddLayer("h", 0x1234)
			lt := pub.AddLayer(0, "h", sim.describe, func() {})
			if lt == nil {
				t.Fatal("no layer track")
			}
			sim.readLayerRTP((&feed{pkts: frames(t, tc.gop)}).read, layer, lt)
			same(t, "late viewer of the layer", lateViewer(t, st, lt, len(tc.gop)), tc.gop, 0)
			same(t, "late viewer of the selected layer", lateViewer(t, st, st.Tracks()[0], len(tc.gop)), tc.gop, tc.skip)
		})
	}
}
