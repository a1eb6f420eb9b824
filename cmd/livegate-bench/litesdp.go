package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// The light client's payload types: what a browser offers for these
// codecs, and what the gateway's answers echo.
const (
	liteVideoPT = 102
	liteAudioPT = 111
)

// liteOffer is the light viewer's WHEP offer: recvonly H.264
// (constrained baseline, packetization-mode 1, as the test clip) and Opus,
// one BUNDLE transport with rtcp-mux, a DTLS role left to the answerer,
// and the one host candidate of the viewer's socket. NACK feedback is
// offered only when the viewer sends NACKs; there is no transport-cc (the
// client sends no feedback for it).
func liteOffer(ufrag, pwd, fingerprint string, cand netip.AddrPort, nack bool) string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- %d 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", binary.BigEndian.Uint64(id[:])>>1)
	b.WriteString("a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n")
	section := func(mid, kind string, pt int, rtpmap, fmtp string, fb bool) {
		fmt.Fprintf(&b, "m=%s 9 UDP/TLS/RTP/SAVPF %d\r\nc=IN IP4 127.0.0.1\r\n", kind, pt)
		b.WriteString("a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\n")
		b.WriteString("a=fingerprint:sha-256 " + fingerprint + "\r\na=setup:actpass\r\n")
		b.WriteString("a=mid:" + mid + "\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n")
		fmt.Fprintf(&b, "a=rtpmap:%d %s\r\n", pt, rtpmap)
		if fb {
			fmt.Fprintf(&b, "a=rtcp-fb:%d nack\r\n", pt)
		}
		fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", pt, fmtp)
		if mid == "0" {
			fmt.Fprintf(&b, "a=candidate:1 1 udp 2130706431 %s %d typ host\r\na=end-of-candidates\r\n", cand.Addr(), cand.Port())
		}
	}
	section("0", "video", liteVideoPT, "H264/90000",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", nack)
	section("1", "audio", liteAudioPT, "opus/48000/2", "minptime=10;useinbandfec=1", false)
	return b.String()
}

// liteAnswer is what the client needs from a WHEP answer.
type liteAnswer struct {
	ufrag, pwd string
	// fingerprints are the SHA-256 fingerprints the DTLS certificate may
	// have (other hash functions are not offered by either server).
	fingerprints [][]byte
	// dtlsServer: the answer says setup:active (pion's answerer), so the
	// client is the DTLS server; setup:passive (livegate's lite transport)
	// makes it the client.
	dtlsServer bool
	// cands are the answer's UDP candidates on this machine, loopback
	// ones first (see localUDPCandidate): the tool never sends anywhere
	// else.
	cands []netip.AddrPort
	// videoPT and audioPT are the accepted sections' payload types, -1 if
	// a section was refused.
	videoPT, audioPT int
}

// parseLiteAnswer reads an SDP answer; anything it cannot use is an error
// that names what is missing.
func parseLiteAnswer(raw string) (*liteAnswer, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	a := &liteAnswer{videoPT: -1, audioPT: -1}
	setup := ""
	take := func(attrs []sdp.Attribute) error {
		for _, at := range attrs {
			switch at.Key {
			case "ice-ufrag":
				if a.ufrag == "" {
					a.ufrag = at.Value
				}
			case "ice-pwd":
				if a.pwd == "" {
					a.pwd = at.Value
				}
			case "setup":
				if setup == "" {
					setup = at.Value
				}
			case "fingerprint":
				alg, hexv, ok := strings.Cut(strings.TrimSpace(at.Value), " ")
				if !ok || !strings.EqualFold(alg, "sha-256") {
					continue
				}
				fp, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hexv), ":", ""))
				if err != nil || len(fp) != 32 {
					return fmt.Errorf("answer: bad fingerprint %q", at.Value)
				}
				a.fingerprints = append(a.fingerprints, fp)
			case "candidate":
				if ap, ok := localUDPCandidate(at.Value, localIPs); ok && !containsAddr(a.cands, ap) {
					a.cands = append(a.cands, ap)
				}
			}
		}
		return nil
	}
	if err := take(sd.Attributes); err != nil {
		return nil, err
	}
	for _, md := range sd.MediaDescriptions {
		if err := take(md.Attributes); err != nil {
			return nil, err
		}
		if md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		if _, inactive := md.Attribute("inactive"); inactive {
			continue
		}
		pt, err := strconv.ParseUint(md.MediaName.Formats[0], 10, 7)
		if err != nil {
			return nil, fmt.Errorf("answer: payload type %q", md.MediaName.Formats[0])
		}
		switch md.MediaName.Media {
		case "video":
			if a.videoPT < 0 {
				a.videoPT = int(pt)
			}
		case "audio":
			if a.audioPT < 0 {
				a.audioPT = int(pt)
			}
		}
	}
	switch {
	case a.ufrag == "" || a.pwd == "":
		return nil, errors.New("answer: no ICE credentials")
	case len(a.fingerprints) == 0:
		return nil, errors.New("answer: no sha-256 fingerprint")
	case len(a.cands) == 0:
		return nil, errors.New("answer: no UDP candidate on this machine")
	case a.videoPT < 0:
		return nil, errors.New("answer: video refused")
	}
	slices.SortStableFunc(a.cands, func(x, y netip.AddrPort) int {
		return cmpBool(y.Addr().IsLoopback(), x.Addr().IsLoopback())
	})
	switch setup {
	case "active":
		a.dtlsServer = true
	case "passive", "":
	default:
		return nil, fmt.Errorf("answer: setup:%s", setup)
	}
	return a, nil
}

// localIPs are this machine's own IPv4 addresses. A server that does not
// advertise loopback candidates (pion's default, so other pion-based
// servers) offers its interface addresses: the tool's loopback socket
// reaches those on this machine too, and nothing leaves it.
var localIPs = func() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			m[p.Addr()] = true
		}
	}
	return m
}()

// localUDPCandidate parses an a=candidate value ("foundation component
// transport priority address port typ type ...") and keeps RTP-component
// IPv4 UDP candidates on a loopback address or on one of local's.
func localUDPCandidate(v string, local map[netip.Addr]bool) (netip.AddrPort, bool) {
	f := strings.Fields(v)
	if len(f) < 8 || f[1] != "1" || !strings.EqualFold(f[2], "udp") {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(f[4])
	if err != nil || !ip.Unmap().Is4() || !(ip.Unmap().IsLoopback() || local[ip.Unmap()]) {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

func containsAddr(s []netip.AddrPort, a netip.AddrPort) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
