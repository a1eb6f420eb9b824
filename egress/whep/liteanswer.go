package whep

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtc/lite"
)

// remoteICE is what an offer says about the viewer's ICE and DTLS.
type remoteICE struct {
	ufrag, pwd   string
	fingerprints []string
}

// offerICE reads the ICE credentials and DTLS fingerprints of an offer,
// from its session level or its first media section that has them.
func offerICE(raw string) (remoteICE, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return remoteICE{}, fmt.Errorf("%w: %w", rtc.ErrBadOffer, err)
	}
	var r remoteICE
	take := func(attrs []sdp.Attribute) {
		for _, a := range attrs {
			switch a.Key {
			// Copies: pion/sdp's strings share a buffer of up to 4 KB
			// that the peer would otherwise keep for its whole life.
			case "ice-ufrag":
				if r.ufrag == "" {
					r.ufrag = strings.Clone(a.Value)
				}
			case "ice-pwd":
				if r.pwd == "" {
					r.pwd = strings.Clone(a.Value)
				}
			case "fingerprint":
				if !slices.Contains(r.fingerprints, a.Value) {
					r.fingerprints = append(r.fingerprints, strings.Clone(a.Value))
				}
			}
		}
	}
	take(sd.Attributes)
	for _, md := range sd.MediaDescriptions {
		take(md.Attributes)
	}
	if r.ufrag == "" || r.pwd == "" || len(r.fingerprints) == 0 {
		return r, fmt.Errorf("%w: no ICE credentials or DTLS fingerprint", rtc.ErrBadOffer)
	}
	return r, nil
}

// liteSection is one accepted media section of a lite answer.
type liteSection struct {
	plan plan
	ssrc uint32
	// twcc is the transport-cc header extension's id when the section's
	// offer has it (the peer's one id, see offerCC); 0: not negotiated.
	twcc uint8
	// rtxPT and rtxSSRC: the RTX stream probes are sent on (video
	// sections with transport-cc whose offer pairs RTX with the codec).
	rtxPT   uint8
	rtxSSRC uint32
}

// offerCC finds what send-side congestion control the offer allows for
// the accepted sections: the transport-cc extension's id (one per bundle;
// the one-byte form, 1-14) and, per video section, the RTX payload type
// paired with its codec. It fills the sections' twcc, rtxPT and rtxSSRC
// and returns the id, 0 if transport-cc is not negotiated. Only viewers
// that choose simulcast layers (want) use the estimate: others get no
// transport-cc, and their packets no extension.
func offerCC(offerSDP string, o *rtc.Offer, secs []liteSection, want bool) (uint8, error) {
	if !want {
		return 0, nil
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offerSDP); err != nil {
		return 0, fmt.Errorf("%w: %w", rtc.ErrBadOffer, err)
	}
	var id uint8
	for i := range secs {
		s := &secs[i]
		for j, md := range sd.MediaDescriptions {
			if j >= len(o.Media) || o.Media[j].Mid != s.plan.mid {
				continue
			}
			ext := twccExt(md)
			if ext == 0 || (id != 0 && ext != id) {
				break
			}
			id, s.twcc = ext, ext
			if md.MediaName.Media == "video" {
				if pt := rtxFor(md, s.plan.codec.PayloadType); pt != 0 {
					s.rtxPT, s.rtxSSRC = pt, newSSRC(secs)
				}
			}
			break
		}
	}
	return id, nil
}

// twccExt is the id of a section's transport-cc extension (0: none, or
// one outside the one-byte form).
func twccExt(md *sdp.MediaDescription) uint8 {
	for _, a := range md.Attributes {
		if a.Key != "extmap" {
			continue
		}
		idStr, uri, _ := strings.Cut(a.Value, " ")
		uri, _, _ = strings.Cut(uri, " ")
		idStr, _, _ = strings.Cut(idStr, "/")
		if uri != lite.TWCCURI {
			continue
		}
		if n, err := strconv.Atoi(idStr); err == nil && n >= 1 && n <= 14 {
			return uint8(n)
		}
	}
	return 0
}

// rtxFor is the payload type of the section's RTX format for codec
// payload type pt (a=fmtp:X apt=pt with a=rtpmap:X rtx/...), 0 if none.
func rtxFor(md *sdp.MediaDescription, pt uint8) uint8 {
	rtx := map[string]bool{}
	for _, a := range md.Attributes {
		if a.Key == "rtpmap" {
			f, enc, _ := strings.Cut(a.Value, " ")
			if strings.HasPrefix(strings.ToLower(enc), "rtx/") {
				rtx[f] = true
			}
		}
	}
	for _, a := range md.Attributes {
		if a.Key != "fmtp" {
			continue
		}
		f, params, _ := strings.Cut(a.Value, " ")
		if !rtx[f] {
			continue
		}
		for _, kv := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if k == "apt" && v == strconv.Itoa(int(pt)) {
				if n, err := strconv.Atoi(f); err == nil && n > 0 && n < 128 && n != int(pt) {
					return uint8(n)
				}
			}
		}
	}
	return 0
}

// liteAnswer writes the SDP answer of a lite viewer: ICE-lite, DTLS
// server (setup:passive), one send-only section per plan and every other
// section of the offer refused. The offer's BUNDLE tag stays in the group
// (inactive) when it is refused, as pion's answers do: browsers drop the
// whole bundle otherwise.
func liteAnswer(offerSDP string, o *rtc.Offer, secs []liteSection, ufrag, pwd, fingerprint string, cands []string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offerSDP); err != nil {
		return "", fmt.Errorf("%w: %w", rtc.ErrBadOffer, err)
	}
	byMid := map[string]liteSection{}
	for _, s := range secs {
		byMid[s.plan.mid] = s
	}
	var b strings.Builder
	var id [8]byte
	_, _ = rand.Read(id[:])
	fmt.Fprintf(&b, "v=0\r\no=- %d 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", binary.BigEndian.Uint64(id[:])>>1)
	candsDone := false
	candidates := func() {
		// In the first open section only: the bundle shares one transport,
		// and a PATCH answer lists them once.
		if candsDone {
			return
		}
		candsDone = true
		for _, cand := range cands {
			b.WriteString("a=candidate:" + cand + "\r\n")
		}
		b.WriteString("a=end-of-candidates\r\n")
	}
	var group []string
	for i, md := range sd.MediaDescriptions {
		mid := o.Media[i].Mid
		if _, ok := byMid[mid]; ok || (mid == o.BundleTag && mid != "" && md.MediaName.Port.Value != 0) {
			group = append(group, mid)
		}
	}
	if len(group) > 0 {
		b.WriteString("a=group:BUNDLE " + strings.Join(group, " ") + "\r\n")
	}
	b.WriteString("a=ice-lite\r\na=msid-semantic: WMS livegate\r\n")
	transport := func() {
		b.WriteString("c=IN IP4 0.0.0.0\r\n")
		b.WriteString("a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\n")
		b.WriteString("a=fingerprint:sha-256 " + fingerprint + "\r\na=setup:passive\r\n")
	}
	for i, md := range sd.MediaDescriptions {
		mid := o.Media[i].Mid
		kind := md.MediaName.Media
		protos := strings.Join(md.MediaName.Protos, "/")
		s, kept := byMid[mid]
		switch {
		case kept:
			c := s.plan.codec
			name := c.MimeType[strings.IndexByte(c.MimeType, '/')+1:]
			if s.rtxPT != 0 {
				fmt.Fprintf(&b, "m=%s 9 %s %d %d\r\n", kind, protos, c.PayloadType, s.rtxPT)
			} else {
				fmt.Fprintf(&b, "m=%s 9 %s %d\r\n", kind, protos, c.PayloadType)
			}
			transport()
			b.WriteString("a=mid:" + mid + "\r\na=sendonly\r\na=rtcp-mux\r\n")
			if _, ok := md.Attribute("rtcp-rsize"); ok {
				b.WriteString("a=rtcp-rsize\r\n")
			}
			if s.twcc != 0 {
				fmt.Fprintf(&b, "a=extmap:%d %s\r\n", s.twcc, lite.TWCCURI)
			}
			b.WriteString("a=msid:livegate " + kind + "\r\n")
			rtpmap := fmt.Sprintf("%d %s/%d", c.PayloadType, name, c.ClockRate)
			if c.Channels > 0 {
				rtpmap += "/" + strconv.Itoa(int(c.Channels))
			}
			b.WriteString("a=rtpmap:" + rtpmap + "\r\n")
			fbs := []string{"nack", "nack pli", "ccm fir"}
			if !s.canResend() {
				fbs = fbs[1:] // no generic NACK: see canResend
			}
			for _, fb := range fbs {
				fmt.Fprintf(&b, "a=rtcp-fb:%d %s\r\n", c.PayloadType, fb)
			}
			if s.twcc != 0 {
				fmt.Fprintf(&b, "a=rtcp-fb:%d transport-cc\r\n", c.PayloadType)
			}
			if c.Fmtp != "" {
				fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", c.PayloadType, c.Fmtp)
			}
			if s.rtxPT != 0 {
				fmt.Fprintf(&b, "a=rtpmap:%d rtx/%d\r\na=fmtp:%d apt=%d\r\n", s.rtxPT, c.ClockRate, s.rtxPT, c.PayloadType)
				fmt.Fprintf(&b, "a=ssrc-group:FID %d %d\r\n", s.ssrc, s.rtxSSRC)
			}
			fmt.Fprintf(&b, "a=ssrc:%d cname:livegate\r\na=ssrc:%d msid:livegate %s\r\n", s.ssrc, s.ssrc, kind)
			if s.rtxPT != 0 {
				fmt.Fprintf(&b, "a=ssrc:%d cname:livegate\r\na=ssrc:%d msid:livegate %s\r\n", s.rtxSSRC, s.rtxSSRC, kind)
			}
			candidates()
		case mid == o.BundleTag && mid != "" && md.MediaName.Port.Value != 0:
			// Refused, but it carries the bundle: open and unused.
			fmt.Fprintf(&b, "m=%s 9 %s %s\r\n", kind, protos, strings.Join(md.MediaName.Formats, " "))
			transport()
			b.WriteString("a=mid:" + mid + "\r\n")
			if kind == "application" {
				if v, ok := md.Attribute("sctp-port"); ok {
					b.WriteString("a=sctp-port:" + v + "\r\n")
				}
			} else {
				b.WriteString("a=inactive\r\na=rtcp-mux\r\n")
				for _, a := range md.Attributes {
					if a.Key == "rtpmap" || a.Key == "fmtp" {
						b.WriteString("a=" + a.Key + ":" + a.Value + "\r\n")
					}
				}
			}
			candidates()
		default:
			fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", kind, protos, strings.Join(md.MediaName.Formats, " "))
			// Credentials and fingerprint even here: GStreamer's webrtcbin
			// refuses an answer with a section that lacks them.
			transport()
			if mid != "" {
				b.WriteString("a=mid:" + mid + "\r\n")
			}
			if kind != "application" {
				b.WriteString("a=inactive\r\n")
				// Parsers (pion's among them) want a map for every listed
				// payload type even in a refused section.
				for _, a := range md.Attributes {
					if a.Key == "rtpmap" {
						b.WriteString("a=rtpmap:" + a.Value + "\r\n")
					}
				}
			}
		}
	}
	// The session keeps the answer as long as the viewer stays: an exact
	// copy, not the builder's doubled buffer.
	return strings.Clone(b.String()), nil
}

// randomSSRC is a viewer's SSRC for one section.
// canResend reports whether the section's packets can be retransmitted:
// on an RTX stream, or on the media stream when the resend is the same
// bytes as the original. With transport-cc but no RTX (an audio section of
// a simulcast viewer, video whose offer has no RTX) it is not: every
// packet gets a new transport-cc number, so a resend would seal the same
// SRTP index under a different header, two AES-GCM tags for one IV, which
// give the authentication key away. Such sections offer no generic NACK
// and ignore one.
func (s *liteSection) canResend() bool { return s.twcc == 0 || s.rtxSSRC != 0 }

// newSSRC draws an SSRC that none of the session's streams has yet: two
// streams of one viewer on one SSRC would share SRTP indexes, reusing
// AES-GCM IVs.
func newSSRC(secs []liteSection) uint32 {
	for {
		v := randomSSRC()
		if !slices.ContainsFunc(secs, func(s liteSection) bool { return s.ssrc == v || s.rtxSSRC == v }) {
			return v
		}
	}
}

func randomSSRC() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	if v := binary.BigEndian.Uint32(b[:]); v != 0 {
		return v
	}
	return 1
}
