package codec

// OpusSamples is the duration of an Opus packet in 48 kHz samples, read
// from its TOC byte (RFC 6716 section 3.1); 960 (20 ms) if it cannot be read.
func OpusSamples(p []byte) int64 {
	if len(p) == 0 {
		return 960
	}
	var per int64
	switch c := p[0] >> 3; {
	case c < 12: // SILK: 10, 20, 40, 60 ms
		per = [4]int64{480, 960, 1920, 2880}[c&3]
	case c < 16: // hybrid: 10, 20 ms
		per = [2]int64{480, 960}[c&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		per = [4]int64{120, 240, 480, 960}[c&3]
	}
	switch p[0] & 3 {
	case 0: // one frame
		return per
	case 1, 2: // two frames
		return 2 * per
	default: // code 3: frame count in the next byte
		if len(p) < 2 {
			return 960
		}
		return per * int64(p[1]&0x3f)
	}
}
