package rtc

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/livegate/livegate/relay/codec"
)

// ErrUnsupportedSimulcast is a simulcast offer the gateway cannot serve; the
// wrapped message says why. Answering it anyway would give the client an
// answer it rejects or layers nobody receives.
var ErrUnsupportedSimulcast = errors.New("unsupported simulcast offer")

// MaxSimulcastLayers bounds the layers of one media section: browsers send
// at most three (four with some settings); each layer costs two goroutines.
const MaxSimulcastLayers = 4

// Header extensions simulcast needs (RFC 8852): the publisher tags each
// layer's packets with its rid, and retransmissions with the rid repaired.
const (
	ExtMid          = sdp.SDESMidURI
	ExtRID          = sdp.SDESRTPStreamIDURI
	ExtRepairedRID  = sdp.SDESRepairRTPStreamIDURI
	simulcastAttr   = "simulcast"
	ridAttr         = "rid"
	maxRIDLength    = 255 // RFC 8852: a two-byte header extension element
	ssrcGroupSIMKey = "SIM"
)

// RID is one simulcast layer as offered (RFC 8851).
type RID struct {
	ID     string
	Paused bool    // "~" in a=simulcast: the sender starts it paused
	PTs    []uint8 // pt= restriction; empty: any payload type of the section
}

// Simulcast is the a=simulcast and a=rid description of a media section.
type Simulcast struct {
	Dir  string // "send" (a publisher) or "recv"
	RIDs []RID
	// problem is why the section cannot be published, found while parsing
	// ("" if none); reported by CheckPublish, not by ParseOffer, because a
	// viewer's offer goes through ParseOffer too.
	problem string
}

// ParseSimulcast returns the simulcast description of every media section
// of an offer that has one, by mid. Problems that keep a section from being
// published are kept for CheckPublish: WHEP offers are parsed too.
func ParseSimulcast(raw string) (map[string]*Simulcast, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	out := map[string]*Simulcast{}
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		if s := parseSimulcast(&sd, md); s != nil {
			out[mid] = s
		}
	}
	return out, nil
}

// parseSimulcast reads a media section's simulcast description; nil when it
// has none.
func parseSimulcast(sd *sdp.SessionDescription, md *sdp.MediaDescription) *Simulcast {
	line, ok := md.Attribute(simulcastAttr)
	if !ok {
		if _, sim := ssrcGroupSIM(md); sim {
			return &Simulcast{problem: "SSRC-based simulcast (a=ssrc-group:SIM) is not supported: " +
				"offer rid-based simulcast (a=simulcast and a=rid, RFC 8853)"}
		}
		return nil
	}
	s := &Simulcast{}
	fail := func(format string, args ...any) *Simulcast {
		s.problem = fmt.Sprintf(format, args...)
		return s
	}
	dir, streams, _ := strings.Cut(strings.TrimSpace(line), " ")
	s.Dir = dir
	if dir != "send" {
		return fail("a=simulcast:%s: a publisher must offer to send layers (a=simulcast:send)", line)
	}
	if md.MediaName.Media != string(codec.Video) {
		return fail("simulcast is supported for video only, not %s", md.MediaName.Media)
	}
	if strings.ContainsAny(streams, " ") {
		return fail("a=simulcast:%s: a description for both directions is not supported", line)
	}
	declared := map[string][]uint8{}
	for _, a := range md.Attributes {
		if a.Key != ridAttr {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) < 2 {
			return fail("a=rid:%s: missing direction", a.Value)
		}
		if f[1] != "send" {
			return fail("a=rid:%s: a publisher's layers must be \"send\"", a.Value)
		}
		var pts []uint8
		if len(f) > 2 {
			for _, kv := range strings.Split(f[2], ";") {
				k, v, _ := strings.Cut(kv, "=")
				if k != "pt" {
					continue // max-width and the like: the sender's business
				}
				for _, p := range strings.Split(v, ",") {
					n, err := strconv.ParseUint(p, 10, 7)
					if err != nil {
						return fail("a=rid:%s: payload type %q", a.Value, p)
					}
					pts = append(pts, uint8(n))
				}
			}
		}
		declared[f[0]] = pts
	}
	for _, st := range strings.Split(streams, ";") {
		if strings.Contains(st, ",") {
			return fail("a=simulcast:%s: alternative rids for one layer (%q) are not supported", line, st)
		}
		r := RID{ID: st}
		if strings.HasPrefix(st, "~") {
			r.ID, r.Paused = st[1:], true
		}
		if !validRID(r.ID) {
			return fail("a=simulcast:%s: invalid rid %q (1-%d letters, digits, - or _)", line, r.ID, maxRIDLength)
		}
		pts, ok := declared[r.ID]
		if !ok {
			return fail("a=simulcast:%s: rid %q has no a=rid line", line, r.ID)
		}
		if slices.ContainsFunc(s.RIDs, func(x RID) bool { return x.ID == r.ID }) {
			return fail("a=simulcast:%s: rid %q is listed twice", line, r.ID)
		}
		r.PTs = pts
		s.RIDs = append(s.RIDs, r)
	}
	if len(declared) != len(s.RIDs) {
		return fail("a=rid lines %d, but a=simulcast lists %d layers: every rid must be a layer", len(declared), len(s.RIDs))
	}
	if len(s.RIDs) > MaxSimulcastLayers {
		return fail("%d simulcast layers offered; at most %d are supported", len(s.RIDs), MaxSimulcastLayers)
	}
	// Without these extensions the publisher cannot tag its layers (a
	// browser then rejects the answer); pion cannot tell layers apart
	// without an a=msid.
	for _, uri := range []string{ExtMid, ExtRID} {
		if !hasExtMap(sd, md, uri) {
			return fail("simulcast offered without the %s header extension (a=extmap)", uri)
		}
	}
	if v, ok := md.Attribute(sdp.AttrKeyMsid); !ok || len(strings.Fields(v)) != 2 {
		return fail("simulcast offered without an a=msid:STREAM TRACK line, which the gateway needs to tell the layers apart")
	}
	return s
}

// CheckPublish says whether a publisher's section (mid) with this simulcast
// description can be received with the chosen codec; the error wraps
// ErrUnsupportedSimulcast and names the reason.
func (s *Simulcast) CheckPublish(mid string, chosen OfferedCodec) error {
	if s == nil {
		return nil
	}
	if s.problem != "" {
		return fmt.Errorf("%w: media section %q: %s", ErrUnsupportedSimulcast, mid, s.problem)
	}
	for _, r := range s.RIDs {
		if len(r.PTs) > 0 && !slices.Contains(r.PTs, chosen.PayloadType) {
			return fmt.Errorf("%w: media section %q: layer %q may not use %s (payload type %d), the codec chosen for the section",
				ErrUnsupportedSimulcast, mid, r.ID, chosen.MimeType, chosen.PayloadType)
		}
	}
	return nil
}

func validRID(id string) bool {
	if id == "" || len(id) > maxRIDLength {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// hasExtMap reports whether uri is offered at media or session level.
func hasExtMap(sd *sdp.SessionDescription, md *sdp.MediaDescription, uri string) bool {
	has := func(attrs []sdp.Attribute) bool {
		for _, a := range attrs {
			if a.Key == sdp.AttrKeyExtMap {
				if f := strings.Fields(a.Value); len(f) >= 2 && f[1] == uri {
					return true
				}
			}
		}
		return false
	}
	return has(md.Attributes) || has(sd.Attributes)
}

// ssrcGroupSIM reports an a=ssrc-group:SIM line (legacy, SSRC-based simulcast).
func ssrcGroupSIM(md *sdp.MediaDescription) (string, bool) {
	for _, a := range md.Attributes {
		if a.Key == sdp.AttrKeySSRCGroup && strings.HasPrefix(a.Value, ssrcGroupSIMKey+" ") {
			return a.Value, true
		}
	}
	return "", false
}
