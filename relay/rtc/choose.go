package rtc

import (
	"fmt"
	"slices"
	"strings"

	"github.com/livegate/livegate/relay/codec"
)

// SupportedNames lists what livegate accepts, for error messages.
func SupportedNames() []string {
	return []string{"video/H264 (any profile; packetization-mode 1 or 0)", "video/VP8",
		"video/VP9 (profile-id 0-3)", "video/AV1 (profile 0-2)", "audio/opus"}
}

// check says why livegate cannot forward c as offered, or nil if it can.
// H.264 is judged on its profile (RFC 6184 section 8.1) and packetization
// mode: 1 (non-interleaved) and 0 (single NAL unit, a subset of 1 that
// viewers negotiating mode 1 also receive) are forwarded; 2 (interleaved)
// would need reordering by decoding order.
func check(c codec.Codec) *Rejection {
	name := codecName(c)
	if !codec.Supported(c.MimeType) {
		return &Rejection{Reason: ReasonCodec, Detail: name + " is not forwarded"}
	}
	switch {
	case strings.EqualFold(c.MimeType, codec.MimeH264):
		if m := codec.H264PacketizationMode(c.Fmtp); m != "0" && m != "1" {
			return &Rejection{Reason: ReasonH264Mode, Detail: name + ": packetization-mode " + m + " is not supported (use 1)"}
		}
		if _, err := codec.ParseH264ProfileLevelID(codec.FmtpParam(c.Fmtp, "profile-level-id")); err != nil {
			return &Rejection{Reason: ReasonH264Profile, Detail: name + ": " + err.Error()}
		}
	case strings.EqualFold(c.MimeType, codec.MimeVP9):
		if p := codec.VP9Profile(c.Fmtp); p < "0" || p > "3" || len(p) != 1 {
			return &Rejection{Reason: ReasonCodec, Detail: name + ": VP9 profile-id " + p + " is unknown"}
		}
	case strings.EqualFold(c.MimeType, codec.MimeAV1):
		if p := codec.AV1Profile(c.Fmtp); p < "0" || p > "2" || len(p) != 1 {
			return &Rejection{Reason: ReasonCodec, Detail: name + ": AV1 profile " + p + " is unknown"}
		}
	case strings.EqualFold(c.MimeType, codec.MimeOpus):
		if c.ClockRate != 48000 {
			return &Rejection{Reason: ReasonCodec, Detail: name + ": Opus must be 48000 Hz"}
		}
	}
	return nil
}

// usable reports whether livegate can forward c as offered.
func usable(c codec.Codec) bool { return check(c) == nil }

func codecName(c codec.Codec) string {
	n := strings.TrimPrefix(strings.TrimPrefix(c.MimeType, "audio/"), "video/") + "/" + fmt.Sprint(c.ClockRate)
	if c.Fmtp != "" && (strings.EqualFold(c.MimeType, codec.MimeH264) ||
		strings.EqualFold(c.MimeType, codec.MimeVP9) || strings.EqualFold(c.MimeType, codec.MimeAV1)) {
		n += " (" + c.Fmtp + ")"
	}
	return n
}

// sectionRejection summarises why no codec of a section is usable, with the
// most specific reason found (an H.264 problem says more than "VP8 only").
func (m Media) sectionRejection(problems []*Rejection) Rejection {
	r := Rejection{Mid: m.Mid, Kind: string(m.Kind), Reason: ReasonCodec}
	if len(m.Codecs) == 0 {
		r.Detail = "no codecs offered"
		return r
	}
	var details []string
	for _, p := range problems {
		if p.Reason == ReasonH264Profile || p.Reason == ReasonH264Mode || p.Reason == ReasonH264Level {
			if r.Reason == ReasonCodec {
				r.Reason = p.Reason
			}
		}
		if !slices.Contains(details, p.Detail) {
			details = append(details, p.Detail)
		}
	}
	r.Detail = strings.Join(details, "; ")
	return r
}

// mediaUsable checks what is common to both directions: the section must
// be an open audio or video section with a mid.
func (m Media) mediaUsable(wantDirections ...string) *Rejection {
	r := &Rejection{Mid: m.Mid, Kind: string(m.Kind)}
	switch {
	case m.Kind == "application":
		r.Reason, r.Detail = ReasonDataChannel, "data channels are not relayed"
	case m.Kind != codec.Audio && m.Kind != codec.Video:
		r.Reason, r.Detail = ReasonCodec, "media type "+string(m.Kind)+" is not forwarded"
	case m.Mid == "":
		r.Reason, r.Detail = ReasonNoMid, "the section has no a=mid"
	case !slices.Contains(wantDirections, m.Direction):
		r.Reason, r.Detail = ReasonDirection, "direction "+m.Direction+" (want "+strings.Join(wantDirections, " or ")+")"
	default:
		return nil
	}
	return r
}

// Choose picks one codec of a publisher's media section, or says why none
// can be used. Video follows prefs (MIME subtypes such as "h264", "vp8";
// H.264 first by default because RTMP and HLS can carry it without
// transcoding), then the offer's order. Among H.264 payload types it
// prefers packetization-mode 1 and Constrained Baseline, which every player
// decodes.
func (m Media) Choose(prefs []string) (OfferedCodec, *Rejection) {
	if r := m.mediaUsable("sendonly", "sendrecv"); r != nil {
		return OfferedCodec{}, r
	}
	var ok []OfferedCodec
	var problems []*Rejection
	for _, c := range m.Codecs {
		if p := check(c.Codec); p != nil {
			problems = append(problems, p)
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		r := m.sectionRejection(problems)
		return OfferedCodec{}, &r
	}
	rank := func(c OfferedCodec) int {
		sub := strings.ToLower(strings.TrimPrefix(strings.ToLower(c.MimeType), string(m.Kind)+"/"))
		r := len(prefs) * 4
		if i := slices.Index(prefs, sub); i >= 0 {
			r = i * 4
		}
		switch sub {
		case "h264":
			if codec.H264PacketizationMode(c.Fmtp) != "1" {
				r += 2
			}
			if pl, _ := codec.ParseH264ProfileLevelID(codec.FmtpParam(c.Fmtp, "profile-level-id")); pl.Profile != codec.H264ConstrainedBaseline {
				r++
			}
		case "vp9":
			if codec.VP9Profile(c.Fmtp) != "0" {
				r++
			}
		case "av1":
			if codec.AV1Profile(c.Fmtp) != "0" {
				r++
			}
		}
		return r
	}
	best := ok[0]
	for _, c := range ok[1:] {
		if rank(c) < rank(best) {
			best = c
		}
	}
	return best, nil
}

// Accepts returns the payload type of a viewer's media section that a
// stream track with codec c is sent as, or says why there is none.
//
// H.264 goes to a payload type whose profile decodes the stream's (a
// Constrained Baseline stream plays on a Baseline, Main or High decoder,
// RFC 6184 section 8.1), the same profile first, and with a packetization
// mode that covers the stream's (mode 1 receives mode 0 streams). The level
// in a viewer's offer is the highest it receives: a payload type at or
// above the stream's level is preferred; one below it is used only if it
// has level-asymmetry-allowed=1, which every browser sends and whose
// decoders play any level of their profiles. VP9 and AV1 need the stream's
// profile.
func (m Media) Accepts(c codec.Codec) (OfferedCodec, *Rejection) {
	if r := m.mediaUsable("recvonly", "sendrecv"); r != nil {
		return OfferedCodec{}, r
	}
	var stream codec.H264ProfileLevel
	isH264 := strings.EqualFold(c.MimeType, codec.MimeH264)
	if isH264 {
		var err error
		if stream, err = codec.ParseH264ProfileLevelID(codec.FmtpParam(c.Fmtp, "profile-level-id")); err != nil {
			return OfferedCodec{}, &Rejection{Mid: m.Mid, Kind: string(m.Kind), Reason: ReasonH264Profile,
				Detail: "the stream's " + err.Error()}
		}
	}
	best, bestRank := OfferedCodec{}, -1
	var problems []*Rejection
	for _, oc := range m.Codecs {
		if !strings.EqualFold(oc.MimeType, c.MimeType) {
			continue
		}
		if p := check(oc.Codec); p != nil {
			problems = append(problems, p)
			continue
		}
		rank := 0
		switch {
		case isH264:
			var p *Rejection
			if rank, p = h264Fit(stream, c.Fmtp, oc.Codec); p != nil {
				problems = append(problems, p)
				continue
			}
		case strings.EqualFold(c.MimeType, codec.MimeVP9):
			if codec.VP9Profile(oc.Fmtp) != codec.VP9Profile(c.Fmtp) {
				problems = append(problems, &Rejection{Reason: ReasonCodec,
					Detail: codecName(oc.Codec) + ": the stream is VP9 profile " + codec.VP9Profile(c.Fmtp)})
				continue
			}
		case strings.EqualFold(c.MimeType, codec.MimeAV1):
			if codec.AV1Profile(oc.Fmtp) != codec.AV1Profile(c.Fmtp) {
				problems = append(problems, &Rejection{Reason: ReasonCodec,
					Detail: codecName(oc.Codec) + ": the stream is AV1 profile " + codec.AV1Profile(c.Fmtp)})
				continue
			}
		}
		if bestRank < 0 || rank < bestRank {
			best, bestRank = oc, rank
		}
	}
	if bestRank >= 0 {
		return best, nil
	}
	if len(problems) == 0 {
		problems = append(problems, &Rejection{Reason: ReasonCodec,
			Detail: "the stream is " + codecName(c) + ", not offered"})
	}
	r := m.sectionRejection(problems)
	return OfferedCodec{}, &r
}

// h264Fit ranks how well a viewer's H.264 payload type receives a stream
// (lower is better), or says why it cannot.
func h264Fit(stream codec.H264ProfileLevel, streamFmtp string, oc codec.Codec) (int, *Rejection) {
	name := codecName(oc)
	want := codec.H264PacketizationMode(streamFmtp)
	have := codec.H264PacketizationMode(oc.Fmtp)
	if have != want && !(have == "1" && want == "0") {
		return 0, &Rejection{Reason: ReasonH264Mode, Detail: name + ": the stream needs packetization-mode " + want}
	}
	viewer, _ := codec.ParseH264ProfileLevelID(codec.FmtpParam(oc.Fmtp, "profile-level-id")) // check passed
	if !viewer.Profile.Decodes(stream.Profile) {
		return 0, &Rejection{Reason: ReasonH264Profile, Detail: name + ": the stream is " + stream.String()}
	}
	rank := 0
	if viewer.Profile != stream.Profile {
		rank++
	}
	if have != want {
		rank += 2
	}
	if viewer.Level < stream.Level {
		if codec.FmtpParam(oc.Fmtp, "level-asymmetry-allowed") != "1" {
			return 0, &Rejection{Reason: ReasonH264Level,
				Detail: name + ": the stream is level " + stream.LevelString() + ", above the offered level, and level-asymmetry-allowed is not 1"}
		}
		rank += 4
	}
	return rank, nil
}
