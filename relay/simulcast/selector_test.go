package simulcast

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay/codec"
)

// vp8Frame is the first packet of a VP8 frame: a payload descriptor with
// S=1, PID=0, then the frame tag and, for key frames, the start code and size.
func vp8Frame(key bool, w, h int) []byte {
	if !key {
		return []byte{0x10, 0x01, 0x00, 0x00, 0xaa, 0xbb}
	}
	return []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a,
		byte(w), byte(w >> 8), byte(h), byte(h >> 8), 0xcc}
}

type fwd struct {
	h       rtp.Header
	payload []byte
}

// sim drives a Selector with three VP8 layers at 30 fps on a fake clock.
type sim struct {
	t      *testing.T
	now    time.Time
	s      *Selector
	out    []fwd
	plis   []uint32
	srs    [][2]uint64
	layers []*simLayer
	// desc adds a VP8 payload descriptor with picture ID, TL0PICIDX and
	// KEYIDX, numbered per layer as browsers do.
	desc bool
}

type simLayer struct {
	idx    int
	ssrc   uint32
	seq    uint16
	ts     uint32
	w, h   int
	paused bool
	pic    uint16
	tl0    uint8
	keyIdx uint8
}

func newSim(t *testing.T) *sim {
	m := &sim{t: t, now: time.Unix(1000, 0)}
	m.s = New(Params{
		MimeType: codec.MimeVP8, ClockRate: 90000,
		Write: func(h *rtp.Header, p []byte) { m.out = append(m.out, fwd{*h, p}) },
		WriteSenderReport: func(ntp uint64, ts uint32) {
			m.srs = append(m.srs, [2]uint64{ntp, uint64(ts)})
		},
		RequestKeyframe: func(ssrc uint32) { m.plis = append(m.plis, ssrc) },
		Now:             func() time.Time { return m.now },
	})
	// Layers with unrelated sequence numbers and timestamps, as browsers
	// send them; registered in an order unrelated to their size.
	for i, l := range []struct {
		rid  string
		w, h int
	}{{"h", 640, 360}, {"q", 320, 180}, {"f", 1280, 720}} {
		sl := &simLayer{ssrc: uint32(100 + i), seq: uint16(1000*i + 60000), ts: uint32(7e8 * i), w: l.w, h: l.h}
		sl.idx = m.s.AddLayer(l.rid, sl.ssrc)
		m.layers = append(m.layers, sl)
	}
	return m
}

// frame sends one frame (two packets) on every unpaused layer and advances
// the clock by one frame interval. key lists the layers sending a keyframe.
func (m *sim) frame(key ...int) {
	for i, l := range m.layers {
		if l.paused {
			continue
		}
		isKey := false
		for _, k := range key {
			isKey = isKey || k == i
		}
		first := vp8Frame(isKey, l.w, l.h)
		second := []byte{0x00, 0x01, 0x02}
		if m.desc {
			if isKey {
				l.keyIdx++
			}
			l.pic++
			l.tl0++
			d := []byte{0x90, 0xd0, 0x80 | byte(l.pic>>8)&0x7f, byte(l.pic), l.tl0, l.keyIdx & 0x1f}
			first = append(append([]byte(nil), d...), first[1:]...)
			d[0] = 0x80
			second = append(append([]byte(nil), d...), 0x01, 0x02)
		}
		for j, p := range [][]byte{first, second} {
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: l.ssrc, SequenceNumber: l.seq, Timestamp: l.ts, Marker: j == 1}
			m.s.Push(l.idx, &h, p)
			l.seq++
		}
		l.ts += 3000
	}
	m.now = m.now.Add(time.Second / 30)
}

// checkContinuous asserts output sequence numbers step by one and
// timestamps never go back.
func (m *sim) checkContinuous() {
	m.t.Helper()
	for i := 1; i < len(m.out); i++ {
		a, b := m.out[i-1].h, m.out[i].h
		if b.SequenceNumber != a.SequenceNumber+1 {
			m.t.Fatalf("packet %d: seq %d after %d", i, b.SequenceNumber, a.SequenceNumber)
		}
		if d := int32(b.Timestamp - a.Timestamp); d < 0 || d > 90000 {
			m.t.Fatalf("packet %d: timestamp step %d", i, d)
		}
	}
}

func (m *sim) lastSSRC() uint32 { return m.out[len(m.out)-1].h.SSRC }

func TestSelectorForwardsHighestLayer(t *testing.T) {
	m := newSim(t)
	m.frame(0, 1, 2) // every layer starts with a keyframe
	for range 30 {
		m.frame()
	}
	if got := m.lastSSRC(); got != m.layers[2].ssrc {
		t.Fatalf("forwarding SSRC %d, want the 1280x720 layer's %d", got, m.layers[2].ssrc)
	}
	m.checkContinuous()
	// After the start, everything forwarded is the top layer: one frame
	// of each smaller layer at most.
	top := 0
	for _, f := range m.out {
		if f.h.SSRC == m.layers[2].ssrc {
			top++
		}
	}
	if top != 62 {
		t.Fatalf("%d packets of the top layer forwarded, want 62", top)
	}
	// Keyframe requests from readers go to the forwarded layer.
	m.plis = nil
	m.s.RequestKeyframe()
	if len(m.plis) != 1 || m.plis[0] != m.layers[2].ssrc {
		t.Fatalf("keyframe request went to %v, want [%d]", m.plis, m.layers[2].ssrc)
	}
}

func TestSelectorTopLayerPausesAndResumes(t *testing.T) {
	m := newSim(t)
	m.frame(0, 1, 2)
	for range 10 {
		m.frame()
	}
	top, mid := m.layers[2], m.layers[0]
	top.paused = true
	m.plis = nil
	for range 15 { // 500 ms: not yet paused
		m.frame()
	}
	if len(m.plis) != 0 {
		t.Fatalf("keyframe requested after 500 ms of silence: %v", m.plis)
	}
	for range 10 {
		m.frame()
	}
	if len(m.plis) == 0 || m.plis[0] != mid.ssrc {
		t.Fatalf("after the top layer paused, keyframe requests %v; want the 640x360 layer %d first", m.plis, mid.ssrc)
	}
	m.frame(0) // the middle layer answers
	m.frame()
	if m.lastSSRC() != mid.ssrc {
		t.Fatalf("forwarding %d after the top layer paused, want %d", m.lastSSRC(), mid.ssrc)
	}
	// The top layer comes back, as browsers resume it: with a keyframe.
	top.paused = false
	top.ts += 90000 // it was silent for about a second
	m.frame(2)
	m.frame()
	if m.lastSSRC() != top.ssrc {
		t.Fatalf("forwarding %d after the top layer resumed, want %d", m.lastSSRC(), top.ssrc)
	}
	m.checkContinuous()
	if n := m.s.Switches(); n < 3 {
		t.Fatalf("%d switches", n)
	}
}

func TestSelectorAsksHigherLayerForKeyframe(t *testing.T) {
	m := newSim(t)
	m.frame(1) // only the smallest layer's keyframe got through
	for range 3 {
		m.frame()
	}
	if m.lastSSRC() != m.layers[1].ssrc {
		t.Fatalf("did not start on the first keyframe")
	}
	// Sizes of the other layers are unknown; with a second of bitrate the
	// larger layers rank higher, are asked for a keyframe and taken.
	for range 40 {
		m.frame()
	}
	// all layers send the same bytes here, so nothing ranks higher yet
	if len(m.plis) != 0 {
		t.Fatalf("keyframe requested without a reason: %v", m.plis)
	}
	m.frame(0, 2)
	m.frame()
	if m.lastSSRC() != m.layers[2].ssrc {
		t.Fatalf("forwarding %d, want the top layer once its keyframe came", m.lastSSRC())
	}
	m.checkContinuous()
}

func TestSelectorLateKeyframeStartIsNoSwitchPoint(t *testing.T) {
	m := newSim(t)
	m.frame(1)
	m.frame()
	top := m.layers[2]
	// The top layer's keyframe start arrives after a later packet.
	h2 := rtp.Header{Version: 2, SSRC: top.ssrc, SequenceNumber: top.seq + 1, Timestamp: top.ts}
	m.s.Push(top.idx, &h2, []byte{0x00, 0x01})
	h1 := rtp.Header{Version: 2, SSRC: top.ssrc, SequenceNumber: top.seq, Timestamp: top.ts}
	if m.s.Push(top.idx, &h1, vp8Frame(true, 1280, 720)) {
		t.Fatal("switched at a keyframe start that arrived after later packets of its frame")
	}
}

func TestSelectorAlignsTimestampsWithSenderReports(t *testing.T) {
	m := newSim(t)
	m.frame(1) // start on q (layer index 1)
	m.frame()
	q, f := m.layers[1], m.layers[2]
	// Both layers report the same NTP instant for their current timestamps.
	ntp := uint64(5000) << 32
	m.s.SenderReport(q.idx, ntp, q.ts)
	m.s.SenderReport(f.idx, ntp, f.ts)
	if len(m.srs) != 1 || uint32(m.srs[0][1]) != m.out[len(m.out)-1].h.Timestamp+3000 {
		t.Fatalf("forwarded sender reports %v; want one, at the output time of q's next frame", m.srs)
	}
	lastTS := m.out[len(m.out)-1].h.Timestamp
	q.paused = true // so the switch is the only thing at this instant
	m.frame(2)
	var first *fwd
	for i := range m.out {
		if m.out[i].h.SSRC == f.ssrc {
			first = &m.out[i]
			break
		}
	}
	if first == nil {
		t.Fatal("no switch to the top layer")
	}
	// The top layer's keyframe has the capture time of q's next frame:
	// one frame (3000 ticks) after the last output.
	if d := first.h.Timestamp - lastTS; d != 3000 {
		t.Fatalf("output timestamp step at the switch %d, want 3000", d)
	}
}

func TestKeyStartReadsPictureSize(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/clip.h264")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte{0, 0, 0, 1, 0x67})
	j := bytes.Index(raw[i+4:], []byte{0, 0, 0, 1})
	sps := raw[i+4 : i+4+j]
	stap := append([]byte{24, byte(len(sps) >> 8), byte(len(sps))}, sps...)
	stap = append(stap, 0, 2, 0x68, 0xce)
	for _, c := range []struct {
		name    string
		mime    string
		payload []byte
		start   bool
		w, h    int
	}{
		{"h264 stap-a", codec.MimeH264, stap, true, 640, 360},
		{"h264 sps", codec.MimeH264, sps, true, 640, 360},
		{"h264 idr without sps", codec.MimeH264, []byte{0x7c, 0x85, 0x00}, false, 0, 0},
		{"vp8 key", codec.MimeVP8, vp8Frame(true, 1280, 720), true, 1280, 720},
		{"vp8 delta", codec.MimeVP8, vp8Frame(false, 0, 0), false, 0, 0},
		{"av1 new sequence", codec.MimeAV1, []byte{0x18, 0x00}, true, 0, 0},
		{"empty", codec.MimeVP8, nil, false, 0, 0},
	} {
		start, w, h := keyStart(c.mime, c.payload)
		if start != c.start || w != c.w || h != c.h {
			t.Errorf("%s: got %v %dx%d, want %v %dx%d", c.name, start, w, h, c.start, c.w, c.h)
		}
	}
}

// The relay may ask for a keyframe from inside Write (a frame reader's
// keyframe cadence is checked on the write path): that must not deadlock.
func TestSelectorKeyframeRequestFromWrite(t *testing.T) {
	m := newSim(t)
	write := m.s.p.Write
	m.s.p.Write = func(h *rtp.Header, p []byte) {
		write(h, p)
		m.s.RequestKeyframe()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.frame(0, 1, 2)
		m.frame()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a keyframe request from within Write deadlocked")
	}
	if len(m.plis) == 0 || m.plis[len(m.plis)-1] != m.layers[2].ssrc {
		t.Fatalf("keyframe requests %v; want the last to the forwarded top layer %d", m.plis, m.layers[2].ssrc)
	}
}

// VP8 picture IDs, TL0PICIDX and KEYIDX continue across switches, so a
// receiver does not take the new layer's frames for old ones.
func TestSelectorContinuesVP8PictureNumbers(t *testing.T) {
	m := newSim(t)
	m.desc = true
	for i, l := range m.layers {
		l.pic, l.tl0, l.keyIdx = uint16(1000*i+32000), uint8(50*i), uint8(7*i)
	}
	m.frame(1) // start on q
	for range 5 {
		m.frame()
	}
	m.frame(2) // up to f
	for range 5 {
		m.frame()
	}
	m.layers[2].paused = true
	for range 25 {
		m.frame()
	}
	m.frame(0) // down to h
	for range 5 {
		m.frame()
	}
	if m.s.Switches() != 3 {
		t.Fatalf("%d switches, want 3", m.s.Switches())
	}
	var prev descFields
	var prevP []byte
	frames := 0
	for _, o := range m.out {
		if o.payload[0]&0x10 == 0 { // not the first packet of a frame
			continue
		}
		f := vp8Fields(o.payload)
		if f.pic < 0 || f.picBits != 15 || f.tl0 < 0 || f.keyIdx < 0 {
			t.Fatalf("descriptor fields lost: %+v", f)
		}
		if prevP != nil {
			if got, want := f.picture(o.payload), (prev.picture(prevP)+1)&0x7fff; got != want {
				t.Fatalf("frame %d: picture ID %d after %d", frames, got, prev.picture(prevP))
			}
			if got, want := o.payload[f.tl0], prevP[prev.tl0]+1; got != want {
				t.Fatalf("frame %d: TL0PICIDX %d after %d", frames, got, prevP[prev.tl0])
			}
			key := codec.IsKeyframe(codec.MimeVP8, o.payload)
			k, pk := o.payload[f.keyIdx]&0x1f, prevP[prev.keyIdx]&0x1f
			if key && k != (pk+1)&0x1f || !key && k != pk {
				t.Fatalf("frame %d (key %v): KEYIDX %d after %d", frames, key, k, pk)
			}
		}
		prev, prevP = f, o.payload
		frames++
	}
	m.checkContinuous()
}
