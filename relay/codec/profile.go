package codec

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// H264Profile is an H.264 profile as RFC 6184 section 8.1 derives it from
// profile_idc and the constraint flags of profile-level-id (the second byte,
// profile-iop), not from the hex prefix: 42c0, 42e0 and 4240 are all
// Constrained Baseline.
type H264Profile int

// H.264 profiles a WebRTC peer can signal.
const (
	H264ProfileUnknown H264Profile = iota
	H264ConstrainedBaseline
	H264Baseline
	H264Main
	H264Extended
	H264High
	H264ConstrainedHigh
	H264High10
	H264High422
	H264High444
)

func (p H264Profile) String() string {
	switch p {
	case H264ConstrainedBaseline:
		return "Constrained Baseline"
	case H264Baseline:
		return "Baseline"
	case H264Main:
		return "Main"
	case H264Extended:
		return "Extended"
	case H264High:
		return "High"
	case H264ConstrainedHigh:
		return "Constrained High"
	case H264High10:
		return "High 10"
	case H264High422:
		return "High 4:2:2"
	case H264High444:
		return "High 4:4:4 Predictive"
	}
	return "unknown"
}

// H264ProfileLevel is a parsed profile-level-id.
type H264ProfileLevel struct {
	Profile H264Profile
	// Level is level_idc (31 means 3.1); level 1b is reported as 9 so that
	// levels order numerically (1 < 1b < 1.1).
	Level int
}

// Level1b is the Level value of H.264 level 1b.
const Level1b = 9

// DefaultH264ProfileLevelID is what an absent profile-level-id means
// (RFC 6184 section 8.1: Baseline, level 1.0).
const DefaultH264ProfileLevelID = "42000a"

// Constraint flags in profile-iop.
const (
	constraintSet0 = 0x80
	constraintSet1 = 0x40
	constraintSet2 = 0x20
	constraintSet3 = 0x10
	constraintSet4 = 0x08
	constraintSet5 = 0x04
)

// ParseH264ProfileLevelID parses the profile-level-id fmtp value ("42e01f").
// An empty string means the RFC's default.
func ParseH264ProfileLevelID(s string) (H264ProfileLevel, error) {
	if s == "" {
		s = DefaultH264ProfileLevelID
	}
	if len(s) != 6 {
		return H264ProfileLevel{}, fmt.Errorf("profile-level-id %q: want 6 hex digits", s)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return H264ProfileLevel{}, fmt.Errorf("profile-level-id %q: %w", s, err)
	}
	idc, iop, level := b[0], b[1], int(b[2])
	p := h264Profile(idc, iop)
	if p == H264ProfileUnknown {
		return H264ProfileLevel{}, fmt.Errorf("profile-level-id %q: unknown profile (profile_idc %d, constraint flags %08b)", s, idc, iop)
	}
	// Level 1b: level_idc 11 with constraint_set3 in Baseline, Main and
	// Extended (in the other profiles level_idc 9 says 1b).
	switch {
	case level == 11 && iop&constraintSet3 != 0 && (idc == 66 || idc == 77 || idc == 88):
		level = Level1b
	case level == 9:
		level = Level1b
	}
	if !validH264Level(level) {
		return H264ProfileLevel{}, fmt.Errorf("profile-level-id %q: unknown level_idc %d", s, b[2])
	}
	return H264ProfileLevel{Profile: p, Level: level}, nil
}

// h264Profile applies RFC 6184 table 5 and the H.264 spec's rules for
// constraint flags (the same table libwebrtc uses).
func h264Profile(idc, iop byte) H264Profile {
	switch idc {
	case 66: // Baseline; constraint_set1 makes it Constrained Baseline.
		if iop&constraintSet1 != 0 {
			return H264ConstrainedBaseline
		}
		return H264Baseline
	case 77: // Main; constraint_set0 means it also obeys Constrained Baseline.
		if iop&constraintSet0 != 0 {
			return H264ConstrainedBaseline
		}
		return H264Main
	case 88: // Extended; set0+set1 is Constrained Baseline, set0 Baseline.
		switch {
		case iop&(constraintSet0|constraintSet1) == constraintSet0|constraintSet1:
			return H264ConstrainedBaseline
		case iop&constraintSet0 != 0:
			return H264Baseline
		}
		return H264Extended
	case 100: // High; set4+set5 is Constrained High.
		if iop&(constraintSet4|constraintSet5) == constraintSet4|constraintSet5 {
			return H264ConstrainedHigh
		}
		return H264High
	case 110:
		return H264High10
	case 122:
		return H264High422
	case 244:
		return H264High444
	}
	return H264ProfileUnknown
}

func validH264Level(l int) bool {
	switch l {
	case 10, Level1b, 11, 12, 13, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62:
		return true
	}
	return false
}

// LevelString formats a level as H.264 writes it ("3.1", "1b").
func (pl H264ProfileLevel) LevelString() string {
	if pl.Level == Level1b {
		return "1b"
	}
	return strconv.Itoa(pl.Level/10) + "." + strconv.Itoa(pl.Level%10)
}

func (pl H264ProfileLevel) String() string { return pl.Profile.String() + " " + pl.LevelString() }

// Decodes reports whether a decoder for profile p decodes every stream of
// profile q. Constrained Baseline is the common subset of Baseline, Main
// and High (RFC 6184 section 8.1); Constrained High is a subset of High.
func (p H264Profile) Decodes(q H264Profile) bool {
	if p == q {
		return true
	}
	highFamily := p == H264High || p == H264High10 || p == H264High422 || p == H264High444
	switch q {
	case H264ConstrainedBaseline:
		return p != H264ProfileUnknown
	case H264Baseline:
		return p == H264Extended
	case H264Main, H264ConstrainedHigh:
		return highFamily
	case H264High:
		return highFamily && p != H264High
	}
	return false
}

// FmtpParam returns a parameter of an fmtp line ("" if absent). Keys are
// case-insensitive.
func FmtpParam(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// H264PacketizationMode is the packetization-mode of an H.264 fmtp line
// (absent means 0, single NAL unit mode).
func H264PacketizationMode(fmtp string) string {
	if m := FmtpParam(fmtp, "packetization-mode"); m != "" {
		return m
	}
	return "0"
}

// VP9Profile is the profile-id of a VP9 fmtp line (absent means 0,
// RFC 9628 section 6).
func VP9Profile(fmtp string) string {
	if p := FmtpParam(fmtp, "profile-id"); p != "" {
		return p
	}
	return "0"
}

// AV1Profile is the profile of an AV1 fmtp line (absent means 0, Main,
// per the AV1 RTP specification section 7.2).
func AV1Profile(fmtp string) string {
	if p := FmtpParam(fmtp, "profile"); p != "" {
		return p
	}
	return "0"
}
