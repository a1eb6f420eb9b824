package mediain

import (
	"bytes"
	"os"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProfileLevelID(t *testing.T) {
	for sps, want := range map[string]string{
		"\x67\x42\xc0\x1f": "42e01f", // constrained baseline as x264 writes it
		"\x67\x42\x00\x1e": "42001e",
		"\x67\x4d\x40\x28": "4d0028",
		"\x67\x64\x00\x32": "640032",
		"":                 "42e01f",
	} {
		if got := ProfileLevelID([]byte(sps)); got != want {
			t.Errorf("%x: %s, want %s", sps, got, want)
		}
	}
}

// TestH264ParamSetsBeforeIDR: an IDR without parameter sets gets the last
// ones in front; the packets carry AU content only (no AUD).
func TestH264ParamSetsBeforeIDR(t *testing.T) {
	sps, pps := []byte{0x67, 0x42, 0xc0, 0x1f}, []byte{0x68, 0xce}
	h := NewH264(sps, pps)
	idr := append([]byte{0x65}, bytes.Repeat([]byte{1}, 3000)...)
	pkts := h.Packets(1000, [][]byte{{0x09, 0xf0}, idr})
	var d codecs.H264Packet
	var annexB []byte
	for i, p := range pkts {
		if len(p.Payload) > 1200 || p.Timestamp != 1000 || p.Marker != (i == len(pkts)-1) {
			t.Fatalf("packet %d: %d bytes, ts %d, marker %v", i, len(p.Payload), p.Timestamp, p.Marker)
		}
		b, err := d.Unmarshal(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		annexB = append(annexB, b...)
	}
	types := []byte{}
	for _, n := range bytes.Split(annexB, []byte{0, 0, 0, 1}) {
		if len(n) > 0 {
			types = append(types, n[0]&0x1f)
		}
	}
	if !bytes.Equal(types, []byte{7, 8, 5}) {
		t.Fatalf("NAL types %v, want SPS PPS IDR", types)
	}
	if p := h.Packets(4000, [][]byte{{0x41, 1, 2}}); len(p) != 1 || p[0].Payload[0] != 0x41 {
		t.Fatalf("P frame: %v", p)
	}
}

// TestReadOggOpus: packets written by pion's Ogg writer come back, the two
// header packets skipped.
func TestReadOggOpus(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "*.ogg")
	if err != nil {
		t.Fatal(err)
	}
	w, err := oggwriter.NewWith(f, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := range 50 {
		p := append([]byte{0xfc}, bytes.Repeat([]byte{byte(i)}, 10+i*7)...)
		want = append(want, p)
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(i * 960)}, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	r, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got [][]byte
	if err := ReadOggOpus(r, func(p []byte, n int64) {
		if n != 960 {
			t.Errorf("%d samples, want 960", n)
		}
		got = append(got, p)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}
}
