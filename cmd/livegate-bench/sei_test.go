package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/pion/rtp/codecs"

	"github.com/livegate/livegate/relay/rtcclient/clip"
)

func TestEmulationPrevention(t *testing.T) {
	in := []byte{0, 0, 0, 0, 1, 0, 0, 3, 0, 0, 4, 0, 0}
	want := []byte{0, 0, 3, 0, 0, 3, 1, 0, 0, 3, 3, 0, 0, 4, 0, 0}
	got := appendEmulationPrevention(nil, in)
	if !bytes.Equal(got, want) {
		t.Fatalf("escape: got % x, want % x", got, want)
	}
	if back := removeEmulationPrevention(nil, got); !bytes.Equal(back, in) {
		t.Fatalf("unescape: got % x, want % x", back, in)
	}
}

// noStartCodeEmulation fails if a NAL unit's bytes contain 00 00 00, 00 00
// 01 or 00 00 02, or 00 00 03 followed by a byte > 3 (a needless escape).
func noStartCodeEmulation(t *testing.T, nal []byte) {
	t.Helper()
	for i := 0; i+2 < len(nal); i++ {
		if nal[i] != 0 || nal[i+1] != 0 {
			continue
		}
		switch c := nal[i+2]; {
		case c <= 2:
			t.Fatalf("start code emulation at %d in % x", i, nal)
		case c == 3 && i+3 < len(nal) && nal[i+3] > 3:
			t.Fatalf("needless escape at %d in % x", i, nal)
		}
	}
}

func TestTimingSEIRoundTrip(t *testing.T) {
	cases := []struct {
		ts      int64
		counter uint32
		escapes bool
	}{
		{1_700_000_000_123_456_789, 0x01020304, false},
		{1_700_000_000_123_456_789, 42, true}, // counter 00 00 00 2a
		{0x1800_0000_0300_0000, 0, true},      // 00 00 03 and 00 00 00 00
		{0x1800_0001_0000_0200, 0x0000_0100, true},
		{0x0000_0000_0000_0001, 0x0000_0002, true},
		{math.MaxInt64, math.MaxUint32, false},
		{0x1700_0000_0000_0000, 3, true},
	}
	var p seiParser
	for _, c := range cases {
		nal := appendTimingSEI(nil, c.ts, c.counter)
		if nal[0] != 0x06 {
			t.Fatalf("NAL header %#x, want 0x06", nal[0])
		}
		if nal[len(nal)-1] != 0x80 {
			t.Fatalf("no rbsp trailing bits: % x", nal)
		}
		noStartCodeEmulation(t, nal)
		const unescaped = 1 + 2 + seiPayloadSize + 1
		if escaped := len(nal) > unescaped; escaped != c.escapes {
			t.Errorf("ts %#x counter %#x: %d bytes, escapes %v, want %v", c.ts, c.counter, len(nal), escaped, c.escapes)
		}
		rbsp := removeEmulationPrevention(nil, nal[1:])
		if rbsp[0] != 5 || rbsp[1] != seiPayloadSize || !bytes.Equal(rbsp[2:18], seiUUID[:]) {
			t.Fatalf("bad SEI message header: % x", rbsp)
		}
		ts, counter, ok := p.parse(nal)
		if !ok || ts != c.ts || counter != c.counter {
			t.Errorf("parse(% x) = %#x, %#x, %v; want %#x, %#x", nal, ts, counter, ok, c.ts, c.counter)
		}
	}
}

func TestParseIgnoresOtherSEI(t *testing.T) {
	var p seiParser
	other := append([]byte{6, 5, 24}, bytes.Repeat([]byte{0x11}, 24)...)
	other = append(other, 0x80)
	if _, _, ok := p.parse(other); ok {
		t.Error("parsed an SEI with another UUID")
	}
	// A recovery point message (type 6) first, then ours: found.
	ours := removeEmulationPrevention(nil, appendTimingSEI(nil, 77, 9)[1:])
	two := append([]byte{6, 6, 1, 0x84}, ours...)
	if ts, c, ok := p.parse(appendEmulationPrevention(nil, two)); !ok || ts != 77 || c != 9 {
		t.Errorf("second message: got %d %d %v", ts, c, ok)
	}
	for _, bad := range [][]byte{{6}, {6, 5}, {6, 5, 200, 1, 2}, {6, 0xff, 0xff}, {1, 5, 28}} {
		if _, _, ok := p.parse(bad); ok {
			t.Errorf("parsed % x", bad)
		}
	}
}

func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

func TestInsertTimingSEI(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1f}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	idr := []byte{0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x01}
	sei := appendTimingSEI(nil, 123456789, 7)

	got := insertTimingSEI(nil, annexB(sps, pps, idr), 123456789, 7)
	if want := annexB(sps, pps, sei, idr); !bytes.Equal(got, want) {
		t.Errorf("keyframe:\n got % x\nwant % x", got, want)
	}
	p := []byte{0x41, 0x9a, 0x02}
	got = insertTimingSEI(nil, annexB(p), 123456789, 7)
	if want := annexB(sei, p); !bytes.Equal(got, want) {
		t.Errorf("P frame:\n got % x\nwant % x", got, want)
	}
	// 3-byte start codes keep their bytes; the SEI gets a 4-byte one.
	au := append([]byte{0, 0, 1}, sps...)
	au = append(au, 0, 0, 1)
	au = append(au, idr...)
	got = insertTimingSEI(nil, au, 123456789, 7)
	want := append([]byte{0, 0, 1}, sps...)
	want = append(want, 0, 0, 0, 1)
	want = append(want, sei...)
	want = append(want, 0, 0, 1)
	want = append(want, idr...)
	if !bytes.Equal(got, want) {
		t.Errorf("3-byte start codes:\n got % x\nwant % x", got, want)
	}
}

func TestScanH264STAPA(t *testing.T) {
	sei := appendTimingSEI(nil, 0x1800_0000_0000_0000, 5)
	stap := []byte{0x78}
	for _, n := range [][]byte{{0x67, 0x42}, {0x68, 0xce}, sei} {
		stap = binary.BigEndian.AppendUint16(stap, uint16(len(n)))
		stap = append(stap, n...)
	}
	key, seis := scanH264(stap, nil)
	if !key || len(seis) != 1 || !bytes.Equal(seis[0], sei) {
		t.Fatalf("STAP-A: key %v, seis %x", key, seis)
	}
	var p seiParser
	if ts, c, ok := p.parse(seis[0]); !ok || ts != 0x1800_0000_0000_0000 || c != 5 {
		t.Fatalf("STAP-A SEI: %x %d %v", ts, c, ok)
	}
	for _, c := range []struct {
		payload []byte
		key     bool
	}{
		{[]byte{0x65, 0x88}, true},        // IDR
		{[]byte{0x41, 0x9a}, false},       // P slice
		{[]byte{0x7c, 0x85, 0x00}, true},  // FU-A start, IDR
		{[]byte{0x7c, 0x05, 0x00}, false}, // FU-A middle, IDR
		{[]byte{0x5c, 0x81, 0x00}, false}, // FU-A start, P
		{[]byte{0x78, 0x00, 0x02, 0x06}, false},
		{nil, false},
	} {
		if key, _ := scanH264(c.payload, nil); key != c.key {
			t.Errorf("scanH264(% x) key %v, want %v", c.payload, key, c.key)
		}
	}
}

// TestClipThroughPayloader sends the real clip with timing SEIs through
// pion's H.264 payloader and finds every frame's SEI and every keyframe in
// the RTP payloads, as a viewer would.
func TestClipThroughPayloader(t *testing.T) {
	frames, err := clip.LoadH264("../../testdata/clip.h264")
	if err != nil {
		t.Fatal(err)
	}
	var (
		pay    codecs.H264Payloader
		parser seiParser
		seis   [][]byte
		buf    []byte
		keys   []int
		next   uint32
	)
	const base = int64(0x1800_0000_0000_0000)
	for loop := range 2 {
		for i, f := range frames {
			n := uint32(loop*len(frames) + i)
			buf = insertTimingSEI(buf[:0], f.Data, base+int64(n)<<8, n)
			found := 0
			for _, pkt := range pay.Payload(1200, buf) {
				var key bool
				key, seis = scanH264(pkt, seis[:0])
				if key {
					keys = append(keys, int(n))
				}
				for _, s := range seis {
					ts, c, ok := parser.parse(s)
					if !ok {
						continue // x264's own SEI on the first frame
					}
					if c != next || ts != base+int64(c)<<8 {
						t.Fatalf("frame %d: SEI counter %d ts %#x", n, c, ts)
					}
					next++
					found++
				}
			}
			if found != 1 {
				t.Fatalf("frame %d: %d timing SEIs", n, found)
			}
		}
	}
	// The STAP-A (SPS+PPS) and the IDR's FU-A start both count.
	want := []int{0, 0, 60, 60, 120, 120, 180, 180, 240, 240, 300, 300}
	if len(keys) != len(want) {
		t.Fatalf("keyframe packets at frames %v, want %v", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("keyframe packets at frames %v, want %v", keys, want)
		}
	}
}
