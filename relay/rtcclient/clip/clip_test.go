package clip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/h264reader"
)

const (
	clipH264 = "../../../testdata/clip.h264"
	clipOgg  = "../../../testdata/clip.ogg"
)

// nalTypes lists the NAL unit types of an Annex-B buffer, relying on every
// NAL being behind a 4-byte start code as LoadH264 writes them.
func nalTypes(t *testing.T, au []byte) []h264reader.NalUnitType {
	t.Helper()
	if !bytes.HasPrefix(au, annexBStartCode) {
		t.Fatalf("access unit does not start with a 4-byte start code: % x", au[:min(8, len(au))])
	}
	var types []h264reader.NalUnitType
	for _, nal := range bytes.Split(au, annexBStartCode)[1:] {
		types = append(types, h264reader.NalUnitType(nal[0]&0x1f))
	}
	return types
}

func TestLoadH264Clip(t *testing.T) {
	samples, err := LoadH264(clipH264)
	if err != nil {
		t.Fatal(err)
	}
	// ffprobe -count_frames: 180 frames, key frames at 0, 60, 120.
	if len(samples) != 180 {
		t.Fatalf("got %d samples, want 180", len(samples))
	}
	var keyframes []int
	var total time.Duration
	for i, s := range samples {
		total += s.Duration
		if s.Duration != 33333333 && s.Duration != 33333334 {
			t.Errorf("sample %d: duration %v, want 1/30 s", i, s.Duration)
		}
		types := nalTypes(t, s.Data)
		nSlices := 0
		for _, typ := range types {
			if typ == h264reader.NalUnitTypeCodedSliceIdr || typ == h264reader.NalUnitTypeCodedSliceNonIdr {
				nSlices++
			}
		}
		// x264 without sliced threads codes one slice per picture.
		if nSlices != 1 {
			t.Errorf("sample %d: %d slices (NAL types %v), want 1", i, nSlices, types)
		}
		if s.Keyframe {
			keyframes = append(keyframes, i)
			// repeat-headers=1: parameter sets lead every IDR so a late
			// joiner can decode from any keyframe.
			if len(types) < 3 || types[0] != h264reader.NalUnitTypeSPS || types[1] != h264reader.NalUnitTypePPS ||
				types[len(types)-1] != h264reader.NalUnitTypeCodedSliceIdr {
				t.Errorf("keyframe %d: NAL types %v, want SPS, PPS, ..., IDR", i, types)
			}
		} else if !slices.Equal(types, []h264reader.NalUnitType{h264reader.NalUnitTypeCodedSliceNonIdr}) {
			t.Errorf("sample %d: NAL types %v, want a lone non-IDR slice", i, types)
		}
	}
	if want := []int{0, 60, 120}; !slices.Equal(keyframes, want) {
		t.Errorf("keyframes at %v, want %v", keyframes, want)
	}
	if total != 6*time.Second {
		t.Errorf("total duration %v, want 6s", total)
	}
	// Constrained Baseline, level 3.1 (x264 leaves constraint_set2 clear,
	// hence 42c01f rather than the SDP's 42e01f; same profile).
	if sps := samples[0].Data[4:8]; !bytes.Equal(sps, []byte{0x67, 0x42, 0xc0, 0x1f}) {
		t.Errorf("SPS starts % x, want 67 42 c0 1f", sps)
	}
}

// TestLoadH264KeepsEveryNAL guards against the access-unit splitter dropping
// or reordering NAL units: the NALs of all samples, in order, must be exactly
// the NALs of the file.
func TestLoadH264KeepsEveryNAL(t *testing.T) {
	samples, err := LoadH264(clipH264)
	if err != nil {
		t.Fatal(err)
	}
	var joined []byte
	for _, s := range samples {
		joined = append(joined, s.Data...)
	}
	raw, err := os.ReadFile(clipH264)
	if err != nil {
		t.Fatal(err)
	}
	want, got := readNALs(t, raw), readNALs(t, joined)
	if len(got) != len(want) {
		t.Fatalf("samples hold %d NALs, file has %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("NAL %d differs", i)
		}
	}
}

func readNALs(t *testing.T, annexB []byte) [][]byte {
	t.Helper()
	r, err := h264reader.NewReaderWithOptions(bytes.NewReader(annexB), h264reader.WithIncludeSEI(true))
	if err != nil {
		t.Fatal(err)
	}
	var nals [][]byte
	for {
		nal, err := r.NextNAL()
		if err != nil {
			return nals
		}
		nals = append(nals, nal.Data)
	}
}

func TestLoadH264SplitRules(t *testing.T) {
	var stream []byte
	nal := func(b ...byte) {
		// Mix 3- and 4-byte start codes as real encoders do.
		if len(stream)%2 == 0 {
			stream = append(stream, 0, 0, 0, 1)
		} else {
			stream = append(stream, 0, 0, 1)
		}
		stream = append(stream, b...)
	}
	nal(0x67, 0x42, 0xc0, 0x1f) // SPS
	nal(0x68, 0xce, 0x3c, 0x80) // PPS
	nal(0x06, 0x05, 0x01, 0x80) // SEI
	nal(0x65, 0x88, 0x84)       // IDR slice, first_mb_in_slice 0
	nal(0x65, 0x40, 0x84)       // IDR slice, first_mb_in_slice 1: same picture
	nal(0x41, 0x9a, 0x02)       // P slice, first_mb_in_slice 0: new picture
	nal(0x09, 0xf0)             // AUD: new picture
	nal(0x41, 0x9a, 0x04)
	nal(0x41, 0x9a, 0x06)

	path := filepath.Join(t.TempDir(), "split.h264")
	if err := os.WriteFile(path, stream, 0o600); err != nil {
		t.Fatal(err)
	}
	samples, err := LoadH264(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		types []h264reader.NalUnitType
		key   bool
	}{
		{[]h264reader.NalUnitType{7, 8, 6, 5, 5}, true},
		{[]h264reader.NalUnitType{1}, false},
		{[]h264reader.NalUnitType{9, 1}, false},
		{[]h264reader.NalUnitType{1}, false},
	}
	if len(samples) != len(want) {
		t.Fatalf("got %d access units, want %d", len(samples), len(want))
	}
	for i, w := range want {
		if got := nalTypes(t, samples[i].Data); !slices.Equal(got, w.types) || samples[i].Keyframe != w.key {
			t.Errorf("AU %d: types %v key %v, want %v key %v", i, got, samples[i].Keyframe, w.types, w.key)
		}
	}
}

func TestLoadOpusClip(t *testing.T) {
	samples, err := LoadOpus(clipOgg)
	if err != nil {
		t.Fatal(err)
	}
	// ffprobe -count_packets: 300 packets, duration 6.000000.
	if len(samples) != 300 {
		t.Fatalf("got %d samples, want 300", len(samples))
	}
	for i, s := range samples {
		if s.Duration != 20*time.Millisecond {
			t.Errorf("sample %d: duration %v, want 20ms", i, s.Duration)
		}
		if !s.Keyframe || len(s.Data) == 0 {
			t.Errorf("sample %d: keyframe %v, %d bytes", i, s.Keyframe, len(s.Data))
		}
	}
}

func TestOpusPacketSamples(t *testing.T) {
	for _, tc := range []struct {
		pkt  []byte
		want int
	}{
		{[]byte{0xfc}, 960},           // CELT FB 20 ms, one frame
		{[]byte{0xe0}, 120},           // CELT FB 2.5 ms
		{[]byte{0x08}, 960},           // SILK NB 20 ms
		{[]byte{0x18}, 2880},          // SILK NB 60 ms
		{[]byte{0x60}, 480},           // hybrid SWB 10 ms
		{[]byte{0xfd}, 1920},          // two frames, equal size
		{[]byte{0xfe}, 1920},          // two frames, different sizes
		{[]byte{0xff, 0x03}, 2880},    // code 3, three frames
		{[]byte{0xff, 0x83, 0}, 2880}, // code 3 with VBR flag set
	} {
		got, err := opusPacketSamples(tc.pkt)
		if err != nil || got != tc.want {
			t.Errorf("% x: got %d, %v; want %d", tc.pkt, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {0xff}, {0xff, 0x00}} {
		if _, err := opusPacketSamples(bad); err == nil {
			t.Errorf("% x: want error", bad)
		}
	}
}

// oggFile builds an Ogg Opus stream with one page per payload, each page
// carrying the given granule position.
func oggFile(payloads [][]byte, granules []uint64) []byte {
	head := []byte("OpusHead\x01\x02")
	head = binary.LittleEndian.AppendUint16(head, 312)
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = append(head, 0, 0, 0)
	tags := []byte("OpusTags\x04\x00\x00\x00test\x00\x00\x00\x00")

	var out []byte
	page := func(seq uint32, typ byte, granule uint64, payload []byte) {
		p := []byte("OggS\x00")
		p = append(p, typ)
		p = binary.LittleEndian.AppendUint64(p, granule)
		p = binary.LittleEndian.AppendUint32(p, 1) // serial
		p = binary.LittleEndian.AppendUint32(p, seq)
		p = append(p, 0, 0, 0, 0) // CRC, filled below
		var lacing []byte
		for n := len(payload); ; n -= 255 {
			if n < 255 {
				lacing = append(lacing, byte(n))
				break
			}
			lacing = append(lacing, 255)
		}
		p = append(p, byte(len(lacing)))
		p = append(p, lacing...)
		p = append(p, payload...)
		binary.LittleEndian.PutUint32(p[22:], oggCRC(p))
		out = append(out, p...)
	}
	page(0, 0x02, 0, head)
	page(1, 0, 0, tags)
	for i, pl := range payloads {
		page(uint32(i+2), 0, granules[i], pl)
	}
	return out
}

func oggCRC(data []byte) uint32 {
	var crc uint32
	for _, b := range data {
		crc ^= uint32(b) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.ogg")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadOpusEndTrimmedLastPage(t *testing.T) {
	pkt := []byte{0xfc, 1, 2, 3}
	// The last page ends 312 samples into its packet; the packet still
	// decodes to 20 ms and must be paced as such.
	path := writeTemp(t, oggFile([][]byte{pkt, pkt, pkt}, []uint64{960, 1920, 2232}))
	samples, err := LoadOpus(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 3 || samples[2].Duration != 20*time.Millisecond {
		t.Fatalf("got %d samples, last %v", len(samples), samples[len(samples)-1].Duration)
	}
}

func TestLoadOpusRejectsSeveralPacketsPerPage(t *testing.T) {
	pkt := []byte{0xfc, 1, 2, 3}
	// Page 2 holds two 20 ms packets; oggreader would glue them together.
	glued := append(slices.Clone(pkt), pkt...)
	path := writeTemp(t, oggFile([][]byte{pkt, glued, pkt}, []uint64{960, 2880, 3840}))
	_, err := LoadOpus(path)
	if err == nil || !strings.Contains(err.Error(), "page_duration") {
		t.Fatalf("got %v, want an error pointing at -page_duration", err)
	}
}

func TestPlayPacesInRealTime(t *testing.T) {
	samples, err := LoadH264(clipH264)
	if err != nil {
		t.Fatal(err)
	}
	samples = samples[:15]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		written int
		elapsed time.Duration
	)
	start := time.Now()
	err = Play(ctx, samples, func(s Sample, loop int) error {
		if loop == 1 {
			// The second loop starts once all 15 frames (500 ms) have
			// been given their time.
			elapsed = time.Since(start)
			cancel()
			return nil
		}
		if written >= len(samples) || !bytes.Equal(s.Data, samples[written].Data) {
			t.Errorf("write %d: not sample %d", written, written)
		}
		written++
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Play returned %v, want context.Canceled", err)
	}
	if written != len(samples) {
		t.Errorf("first loop wrote %d samples, want %d", written, len(samples))
	}
	if elapsed < 450*time.Millisecond || elapsed > 700*time.Millisecond {
		t.Errorf("15 frames took %v, want 450-700 ms", elapsed)
	}
}

func TestPlayStopsOnCancel(t *testing.T) {
	samples := []Sample{{Data: []byte{1}, Duration: 10 * time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)

	start := time.Now()
	writes := 0
	err := Play(ctx, samples, func(Sample, int) error { writes++; return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Play returned %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("Play took %v to notice cancellation", d)
	}
	if writes != 1 {
		t.Errorf("%d writes, want 1 (first sample is immediate)", writes)
	}
}

func TestPlayReturnsWriteError(t *testing.T) {
	boom := errors.New("boom")
	samples := []Sample{{Duration: time.Millisecond}, {Duration: time.Millisecond}}
	n := 0
	err := Play(context.Background(), samples, func(Sample, int) error {
		n++
		if n == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || n != 3 {
		t.Fatalf("got %v after %d writes, want boom after 3", err, n)
	}
}

func TestPlayRejectsUnpaceableInput(t *testing.T) {
	write := func(Sample, int) error { return nil }
	for _, samples := range [][]Sample{nil, {{Data: []byte{1}}}, {{Duration: -time.Second}}} {
		if err := Play(context.Background(), samples, write); err == nil {
			t.Errorf("%v: want error", samples)
		}
	}
}

// TestPlayResumesAfterStall checks that a writer blocked far past maxLag
// gets paced samples afterwards instead of a catch-up burst.
func TestPlayResumesAfterStall(t *testing.T) {
	samples := make([]Sample, 10)
	for i := range samples {
		samples[i] = Sample{Data: []byte{byte(i)}, Duration: 10 * time.Millisecond}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var at []time.Time
	err := play(ctx, samples, func(Sample, int) error {
		at = append(at, time.Now())
		switch len(at) {
		case 1:
			time.Sleep(300 * time.Millisecond)
		case 6:
			cancel()
		}
		return nil
	}, 50*time.Millisecond)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Play returned %v", err)
	}
	// Samples 1..5 follow the stall; paced, they span 40 ms. Without the
	// rebase they would all be late by ~290 ms and go out at once.
	if d := at[5].Sub(at[1]); d < 30*time.Millisecond {
		t.Errorf("samples after the stall went out in %v, want paced (~40ms)", d)
	}
}
