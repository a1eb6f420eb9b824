package codec

import (
	"testing"
)

type keyCase struct {
	name    string
	mime    string
	payload []byte
	want    bool
}

// stapA builds an H.264 STAP-A payload from whole NAL units.
func stapA(nalus ...[]byte) []byte {
	p := []byte{0x78} // F=0 NRI=3 type=24
	for _, n := range nalus {
		p = append(p, byte(len(n)>>8), byte(len(n)))
		p = append(p, n...)
	}
	return p
}

var (
	nalSPS    = []byte{0x67, 0x42, 0xc0, 0x1f}
	nalPPS    = []byte{0x68, 0xce, 0x3c, 0x80}
	nalIDR    = []byte{0x65, 0x88, 0x84, 0x00}
	nalNonIDR = []byte{0x41, 0x9a, 0x02, 0x00}
	nalSEI    = []byte{0x06, 0x05, 0x01, 0x00}
)

func h264Cases() []keyCase {
	return []keyCase{
		{"single IDR", MimeH264, nalIDR, true},
		{"single IDR header only", MimeH264, []byte{0x65}, true},
		{"single IDR NRI 0", MimeH264, []byte{0x05, 0x88}, true},
		{"single SPS", MimeH264, nalSPS, true},
		{"single PPS", MimeH264, nalPPS, false},
		{"single non-IDR", MimeH264, nalNonIDR, false},
		{"single SEI", MimeH264, nalSEI, false},
		{"access unit delimiter", MimeH264, []byte{0x09, 0xf0}, false},
		{"STAP-A SPS+PPS+IDR", MimeH264, stapA(nalSPS, nalPPS, nalIDR), true},
		{"STAP-A SPS+PPS", MimeH264, stapA(nalSPS, nalPPS), true},
		{"STAP-A SEI+IDR (IDR last)", MimeH264, stapA(nalSEI, nalPPS, nalIDR), true},
		{"STAP-A PPS+non-IDR", MimeH264, stapA(nalPPS, nalNonIDR), false},
		{"STAP-A non-IDR only", MimeH264, stapA(nalNonIDR), false},
		{"STAP-A header only", MimeH264, []byte{0x78}, false},
		{"STAP-A size only", MimeH264, []byte{0x78, 0x00, 0x04}, false},
		{"STAP-A size beyond payload", MimeH264, []byte{0x78, 0x00, 0x09, 0x65, 0x88}, false},
		{"STAP-A zero size", MimeH264, []byte{0x78, 0x00, 0x00, 0x65, 0x88}, false},
		{"STAP-A second unit truncated", MimeH264, append(stapA(nalPPS), 0x00, 0x05, 0x65), false},
		{"FU-A start of IDR", MimeH264, []byte{0x7c, 0x85, 0xb8, 0x00}, true},
		{"FU-A continuation of IDR", MimeH264, []byte{0x7c, 0x05, 0x11, 0x22}, false},
		{"FU-A end of IDR", MimeH264, []byte{0x7c, 0x45, 0x11, 0x22}, false},
		{"FU-A start of non-IDR", MimeH264, []byte{0x5c, 0x81, 0x9a, 0x00}, false},
		{"FU-A indicator only", MimeH264, []byte{0x7c}, false},
		{"FU-A start header only", MimeH264, []byte{0x7c, 0x85}, true},
		{"empty", MimeH264, []byte{}, false},
		{"nil", MimeH264, nil, false},
		{"mime case-insensitive", "VIDEO/h264", nalIDR, true},
	}
}

func vp8Cases() []keyCase {
	return []keyCase{
		// No extension: S=1, PID=0, then the VP8 frame header whose lowest
		// bit (P) is 0 for key frames.
		{"key, no X", MimeVP8, []byte{0x10, 0x10, 0x02, 0x00, 0x9d}, true},
		{"delta, no X", MimeVP8, []byte{0x10, 0x11, 0x02, 0x00}, false},
		{"key byte but not start of partition", MimeVP8, []byte{0x00, 0x10}, false},
		{"key byte but partition 1", MimeVP8, []byte{0x11, 0x10}, false},
		{"key, X without fields", MimeVP8, []byte{0x90, 0x00, 0x10}, true},
		{"key, 7-bit picture ID", MimeVP8, []byte{0x90, 0x80, 0x12, 0x10}, true},
		{"delta, 7-bit picture ID", MimeVP8, []byte{0x90, 0x80, 0x12, 0x11}, false},
		// With a 15-bit picture ID (M set) the second ID byte must be
		// skipped: it is odd/even here so that a misparse flips the answer.
		{"key, 15-bit picture ID", MimeVP8, []byte{0x90, 0x80, 0x81, 0x01, 0x10}, true},
		{"delta, 15-bit picture ID", MimeVP8, []byte{0x90, 0x80, 0x80, 0x00, 0x11}, false},
		{"key, picture ID + TL0PICIDX + TID", MimeVP8, []byte{0x90, 0xe0, 0x05, 0x01, 0x40, 0x10}, true},
		{"delta, picture ID + TL0PICIDX + TID", MimeVP8, []byte{0x90, 0xe0, 0x05, 0x00, 0x40, 0x11}, false},
		{"key, 15-bit ID + L + K", MimeVP8, []byte{0x90, 0xd0, 0xff, 0xff, 0x01, 0x01, 0x10}, true},
		{"key, KEYIDX only", MimeVP8, []byte{0x90, 0x10, 0x21, 0x10}, true},
		{"truncated after X", MimeVP8, []byte{0x90}, false},
		{"truncated after ext", MimeVP8, []byte{0x90, 0x80}, false},
		{"truncated in 15-bit ID", MimeVP8, []byte{0x90, 0x80, 0x81}, false},
		{"truncated before frame header", MimeVP8, []byte{0x90, 0x80, 0x81, 0x00}, false},
		{"descriptor only", MimeVP8, []byte{0x10}, false},
		{"empty", MimeVP8, nil, false},
	}
}

func vp9Cases() []keyCase {
	return []keyCase{
		{"B set, P clear", MimeVP9, []byte{0x08, 0x00}, true},
		{"B set, P clear, descriptor byte only", MimeVP9, []byte{0x08}, true},
		{"I+B+E, P clear", MimeVP9, []byte{0x8c, 0x80, 0x01}, true},
		{"B set, P set", MimeVP9, []byte{0x48, 0x00}, false},
		{"B clear, P clear (mid frame)", MimeVP9, []byte{0x00, 0x00}, false},
		{"E only", MimeVP9, []byte{0x04}, false},
		{"empty", MimeVP9, nil, false},
	}
}

func av1Cases() []keyCase {
	return []keyCase{
		{"N set", MimeAV1, []byte{0x08, 0x0a, 0x0b}, true},
		{"N set with W=1", MimeAV1, []byte{0x18, 0x0a}, true},
		{"N set with Z and Y", MimeAV1, []byte{0xc8}, true},
		{"N clear", MimeAV1, []byte{0x10, 0x32}, false},
		{"N clear, Z+Y set", MimeAV1, []byte{0xc0}, false},
		{"empty", MimeAV1, nil, false},
	}
}

func audioCases() []keyCase {
	return []keyCase{
		{"opus", MimeOpus, []byte{0xfc, 0xff, 0xfe}, true},
		{"opus empty", MimeOpus, nil, true},
		{"opus upper case", "audio/OPUS", []byte{0x78}, true},
		{"other audio", "audio/PCMU", []byte{0x00}, true},
		{"unknown video", "video/H265", []byte{0x26, 0x01}, false},
		{"unknown video empty", "video/H265", nil, false},
		{"empty mime", "", []byte{0x65}, false},
	}
}

func allCases() []keyCase {
	var all []keyCase
	for _, group := range [][]keyCase{h264Cases(), vp8Cases(), vp9Cases(), av1Cases(), audioCases()} {
		all = append(all, group...)
	}
	return all
}

func TestIsKeyframe(t *testing.T) {
	for _, c := range allCases() {
		t.Run(c.mime+"/"+c.name, func(t *testing.T) {
			if got := IsKeyframe(c.mime, c.payload); got != c.want {
				t.Errorf("IsKeyframe(%q, % x) = %v, want %v", c.mime, c.payload, got, c.want)
			}
		})
	}
}

// Every prefix of every case must be handled without panicking: RTP from the
// network can be cut anywhere.
func TestIsKeyframeTruncatedNoPanic(t *testing.T) {
	mimes := []string{MimeH264, MimeVP8, MimeVP9, MimeAV1, MimeOpus, "video/unknown"}
	for _, c := range allCases() {
		for n := 0; n <= len(c.payload); n++ {
			for _, m := range mimes {
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("IsKeyframe(%q, % x) panicked: %v", m, c.payload[:n], r)
						}
					}()
					IsKeyframe(m, c.payload[:n])
				}()
			}
		}
	}
}

func TestIsKeyframeDoesNotAllocate(t *testing.T) {
	for _, c := range allCases() {
		if c.mime != MimeH264 && c.mime != MimeVP8 && c.mime != MimeVP9 && c.mime != MimeAV1 && c.mime != MimeOpus {
			continue
		}
		allocs := testing.AllocsPerRun(100, func() { IsKeyframe(c.mime, c.payload) })
		if allocs != 0 {
			t.Errorf("IsKeyframe(%q, %s) allocates %v times per call", c.mime, c.name, allocs)
		}
	}
}

func FuzzIsKeyframe(f *testing.F) {
	for _, c := range allCases() {
		f.Add(c.mime, c.payload)
	}
	f.Fuzz(func(t *testing.T, mime string, payload []byte) {
		IsKeyframe(mime, payload) // must not panic
	})
}

func TestSupported(t *testing.T) {
	for _, m := range []string{MimeH264, MimeVP8, MimeVP9, MimeAV1, MimeOpus, "video/h264", "AUDIO/OPUS"} {
		if !Supported(m) {
			t.Errorf("Supported(%q) = false", m)
		}
	}
	for _, m := range []string{"", "video/H265", "audio/PCMU", "video/H2644", "application/data"} {
		if Supported(m) {
			t.Errorf("Supported(%q) = true", m)
		}
	}
}

func TestKindOf(t *testing.T) {
	cases := map[string]Kind{
		MimeOpus:     Audio,
		"Audio/OPUS": Audio,
		"audio/PCMA": Audio,
		MimeH264:     Video,
		MimeVP8:      Video,
		MimeAV1:      Video,
		"":           Video,
	}
	for m, want := range cases {
		if got := KindOf(m); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", m, got, want)
		}
	}
}
