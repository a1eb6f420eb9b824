package codec

import "testing"

func TestOpusSamples(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want int64
	}{
		{nil, 960},
		{[]byte{0xfc}, 960},        // CELT 20 ms, one frame (the test clip's)
		{[]byte{0xfd}, 1920},       // CELT 20 ms, two frames
		{[]byte{0x08}, 960},        // SILK 20 ms
		{[]byte{0x18}, 2880},       // SILK 60 ms
		{[]byte{0x80}, 120},        // CELT 2.5 ms
		{[]byte{0xf3, 0x03}, 1440}, // CELT 10 ms, code 3 with 3 frames
		{[]byte{0xfb}, 960},        // code 3 without its count byte
	} {
		if got := OpusSamples(tc.p); got != tc.want {
			t.Errorf("OpusSamples(% x) = %d, want %d", tc.p, got, tc.want)
		}
	}
}
