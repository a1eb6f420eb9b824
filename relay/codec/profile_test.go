package codec

import "testing"

func TestParseH264ProfileLevelID(t *testing.T) {
	for _, tc := range []struct {
		in      string
		profile H264Profile
		level   string
		bad     bool
	}{
		{"42e01f", H264ConstrainedBaseline, "3.1", false}, // Chromium, Firefox, Safari
		{"42c01f", H264ConstrainedBaseline, "3.1", false}, // GStreamer x264enc, x264
		{"42401f", H264ConstrainedBaseline, "3.1", false},
		{"42C01F", H264ConstrainedBaseline, "3.1", false},
		{"42001f", H264Baseline, "3.1", false},
		{"42801e", H264Baseline, "3.0", false}, // constraint_set0 alone
		{"4d001f", H264Main, "3.1", false},
		{"4d401f", H264Main, "3.1", false},                // x264 main
		{"4d801f", H264ConstrainedBaseline, "3.1", false}, // main + set0
		{"58c01f", H264ConstrainedBaseline, "3.1", false},
		{"58801f", H264Baseline, "3.1", false},
		{"58001f", H264Extended, "3.1", false},
		{"640028", H264High, "4.0", false},
		{"640c1f", H264ConstrainedHigh, "3.1", false},
		{"f4001f", H264High444, "3.1", false},
		{"6e001f", H264High10, "3.1", false},
		{"42f00b", H264ConstrainedBaseline, "1b", false}, // level_idc 11 + set3
		{"42e00b", H264ConstrainedBaseline, "1.1", false},
		{"640009", H264High, "1b", false},
		{"", H264Baseline, "1.0", false}, // RFC 6184 default 42000a
		{"4200", 0, "", true},
		{"zz001f", 0, "", true},
		{"53001f", 0, "", true}, // profile_idc 83 (scalable): not for WebRTC
		{"42e0ff", 0, "", true},
	} {
		pl, err := ParseH264ProfileLevelID(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: parsed as %v, want an error", tc.in, pl)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if pl.Profile != tc.profile || pl.LevelString() != tc.level {
			t.Errorf("%q: %v, want %v %s", tc.in, pl, tc.profile, tc.level)
		}
	}
}

func TestH264ProfileDecodes(t *testing.T) {
	for _, tc := range []struct {
		decoder, stream H264Profile
		ok              bool
	}{
		{H264ConstrainedBaseline, H264ConstrainedBaseline, true},
		{H264Baseline, H264ConstrainedBaseline, true},
		{H264Main, H264ConstrainedBaseline, true},
		{H264High, H264ConstrainedBaseline, true},
		{H264ConstrainedHigh, H264ConstrainedBaseline, true},
		{H264ConstrainedBaseline, H264Baseline, false},
		{H264Main, H264Baseline, false},
		{H264High, H264Main, true},
		{H264Main, H264High, false},
		{H264High, H264ConstrainedHigh, true},
		{H264ConstrainedHigh, H264High, false},
		{H264ConstrainedBaseline, H264Main, false},
	} {
		if got := tc.decoder.Decodes(tc.stream); got != tc.ok {
			t.Errorf("%v decoder, %v stream: %v, want %v", tc.decoder, tc.stream, got, tc.ok)
		}
	}
}

func TestFmtpDefaults(t *testing.T) {
	if m := H264PacketizationMode("profile-level-id=42e01f"); m != "0" {
		t.Errorf("absent packetization-mode: %q, want 0", m)
	}
	if m := H264PacketizationMode("level-asymmetry-allowed=1; packetization-mode=1"); m != "1" {
		t.Errorf("packetization-mode: %q, want 1", m)
	}
	if p := VP9Profile(""); p != "0" {
		t.Errorf("absent VP9 profile-id: %q", p)
	}
	if p := AV1Profile("level-idx=5;profile=1;tier=0"); p != "1" {
		t.Errorf("AV1 profile: %q", p)
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{"audio/OPUS": MimeOpus, "video/h264": MimeH264, "video/vp8": MimeVP8, "video/H265": "video/H265"} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}
