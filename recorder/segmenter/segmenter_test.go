package segmenter

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// Parameter sets of a browser host's resolution ramp (x264 baseline
// 320x180, 640x360 and 1280x720).
var rampSPS = [][]byte{
	mustHex("6742c00dd901419f9f0110000003001000000303c0f142a480"),
	mustHex("6742c01ed900a02ff970110000030001000003003c0f162e48"),
	mustHex("6742c01fd9005005bb0110000003001000000303c0f1832480"),
}

var rampPPS = mustHex("68cb83cb20")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

type memOut struct {
	inits map[string][]byte
	segs  []*Segment
}

func (o *memOut) WriteInit(name string, data []byte) error {
	o.inits[name] = append([]byte(nil), data...)
	return nil
}

func (o *memOut) WriteSegment(s *Segment) error {
	o.segs = append(o.segs, s)
	return nil
}

// host is a simulated publisher at 30 fps with 20 ms Opus packets, fed to
// a segmenter faster than real time with arrival times as if live.
type host struct {
	seg     *Segmenter
	asked   bool // the segmenter asked for a keyframe
	answers bool // the publisher answers keyframe requests (a browser)
	frame   int
	vseq    uint16
	aseq    uint16
	ats     uint32
	start   time.Time
}

func newHost(t *testing.T, target time.Duration, answers bool) (*host, *memOut) {
	t.Helper()
	out := &memOut{inits: map[string][]byte{}}
	h := &host{answers: answers, start: time.Unix(1_700_000_000, 0)}
	seg, err := New(Params{
		Tracks: []relay.TrackInfo{
			{Kind: codec.Video, Codec: codec.Codec{MimeType: codec.MimeH264, ClockRate: 90000, Fmtp: "packetization-mode=1"}},
			{Kind: codec.Audio, Codec: codec.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}},
		},
		SegmentDuration: target,
		RequestKeyframe: func(int) { h.asked = true },
		Out:             out,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.seg = seg
	return h, out
}

// run sends frames for d. key says whether frame i (at media time at)
// is a keyframe on its own account; size is the SPS index in force.
func (h *host) run(t *testing.T, d time.Duration, key func(i int, at time.Duration) bool, size func(at time.Duration) int) {
	t.Helper()
	n := int(d / (time.Second / 30))
	for range n {
		at := time.Duration(h.frame) * time.Second / 30
		isKey := h.frame == 0 || key(h.frame, at) || (h.answers && h.asked)
		if isKey {
			h.asked = false
		}
		var payload []byte
		if isKey {
			sps := rampSPS[size(at)]
			idr := []byte{0x65, 0x88, 0x84, byte(h.frame), byte(h.frame >> 8)}
			payload = []byte{0x18} // STAP-A: SPS, PPS, IDR
			for _, n := range [][]byte{sps, rampPPS, idr} {
				payload = binary.BigEndian.AppendUint16(payload, uint16(len(n)))
				payload = append(payload, n...)
			}
		} else {
			payload = []byte{0x41, 0x9a, byte(h.frame), byte(h.frame >> 8)}
		}
		hdr := rtp.Header{Version: 2, PayloadType: 96, Marker: true, SequenceNumber: h.vseq, Timestamp: uint32(h.frame * 3000)}
		if err := h.seg.WriteRTP(0, &hdr, payload, h.start.Add(at)); err != nil {
			t.Fatal(err)
		}
		h.vseq++
		h.frame++
		for time.Duration(h.ats)*time.Second/48000 < at+time.Second/30 {
			ah := rtp.Header{Version: 2, PayloadType: 111, Marker: true, SequenceNumber: h.aseq, Timestamp: h.ats}
			aat := time.Duration(h.ats) * time.Second / 48000
			if err := h.seg.WriteRTP(1, &ah, []byte{0xfc, 0xff, 0xfe}, h.start.Add(aat)); err != nil {
				t.Fatal(err)
			}
			h.aseq++
			h.ats += 960
		}
	}
	if err := h.seg.Flush(); err != nil {
		t.Fatal(err)
	}
}

// sizeOf says which of rampSPS a segment carries in band; -2 if several.
func sizeOf(data []byte) int {
	found := -1
	for i, sps := range rampSPS {
		if bytes.Contains(data, sps) {
			if found >= 0 {
				return -2
			}
			found = i
		}
	}
	return found
}

// A browser host ramps 320x180 -> 640x360 -> 1280x720 in its first five
// seconds, the last step 0.1 s after a keyframe that ends a segment, and
// sends keyframes only as the relay's 2 s cadence asks (about every
// 1.85 s). One recording: every segment within 1.5x the 4 s target, a new
// init exactly at each resolution step (and describing the segments that
// use it), and no segment of a few frames between a cut and a step.
func TestBrowserHostResolutionRamp(t *testing.T) {
	const target = 4 * time.Second
	h, out := newHost(t, target, true)
	steps := []time.Duration{0, 1200 * time.Millisecond, 5 * time.Second}
	size := func(at time.Duration) int {
		i := 0
		for j, s := range steps {
			if at >= s {
				i = j
			}
		}
		return i
	}
	lastKey := time.Duration(0)
	h.run(t, 30*time.Second, func(i int, at time.Duration) bool {
		step := false
		for _, s := range steps[1:] {
			if at >= s && at-s < time.Second/30 {
				step = true
			}
		}
		if step || at-lastKey >= 1850*time.Millisecond {
			lastKey = at
			return true
		}
		return false
	}, size)

	if len(out.inits) != 3 {
		t.Errorf("%d init segments, want 3 (one per resolution)", len(out.inits))
	}
	var total time.Duration
	for _, s := range out.segs {
		total += s.Duration
		if s.Duration > target*3/2 {
			t.Errorf("segment %d lasts %v, more than 1.5x the %v target", s.Seq, s.Duration, target)
		}
		sz := sizeOf(s.Data)
		if sz < 0 {
			t.Errorf("segment %d carries %d sets of parameters, want exactly one", s.Seq, sz)
			continue
		}
		if init := out.inits[s.Init]; !bytes.Contains(init, rampSPS[sz]) {
			t.Errorf("segment %d (%s) carries SPS %d but its init %s does not", s.Seq, s.Duration, sz, s.Init)
		}
		if s.Seq > 1 && s.Seq < len(out.segs) && s.Duration < target/2 {
			t.Errorf("segment %d lasts only %v", s.Seq, s.Duration)
		}
		if s.NewInit != (s.Seq > 1 && s.Init != out.segs[s.Seq-2].Init) {
			t.Errorf("segment %d: NewInit %v", s.Seq, s.NewInit)
		}
	}
	if total < 29*time.Second || total > 31*time.Second {
		t.Errorf("segments cover %v of 30 s", total)
	}
	for _, s := range out.segs {
		t.Logf("segment %d: %v init %s", s.Seq, s.Duration, s.Init)
	}
}

// Without the relay's cadence (keyframe-max-interval 0), a publisher that
// answers keyframe requests still gets its segments cut near the target:
// the segmenter asks when a segment reaches it.
func TestSegmentAsksForKeyframeAtTarget(t *testing.T) {
	const target = 2 * time.Second
	h, out := newHost(t, target, true)
	h.run(t, 20*time.Second, func(int, time.Duration) bool { return false }, func(time.Duration) int { return 2 })
	if len(out.segs) < 8 {
		t.Fatalf("%d segments in 20 s, want about 10", len(out.segs))
	}
	for _, s := range out.segs[:len(out.segs)-1] {
		if s.Duration < target || s.Duration > target+100*time.Millisecond {
			t.Errorf("segment %d lasts %v, want the %v target plus a frame or two", s.Seq, s.Duration, target)
		}
	}
}

// A publisher that cannot be asked (RTMP, RTSP ingest) and sends a keyframe
// every 10 s: segments follow its GOP (cut only on keyframes).
func TestSegmentsFollowGOPOfPublisherThatCannotBeAsked(t *testing.T) {
	h, out := newHost(t, 4*time.Second, false)
	h.run(t, 30*time.Second, func(i int, _ time.Duration) bool { return i%300 == 0 }, func(time.Duration) int { return 2 })
	if len(out.segs) != 3 {
		t.Fatalf("%d segments, want 3 of 10 s", len(out.segs))
	}
	for _, s := range out.segs {
		if d := s.Duration - 10*time.Second; d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Errorf("segment %d lasts %v, want 10 s", s.Seq, s.Duration)
		}
	}
}
