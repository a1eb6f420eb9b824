package rtcclient

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"
)

// RestartICE performs an ICE restart through the session resource (RFC 9725
// section 4.4): new local credentials and candidates go in a PATCH, the
// server's new ones come back and replace the remote description's.
//
// It may be called again after it failed, for example while the network
// that made the restart necessary is still down: pion cannot roll back a
// local offer, so a restart offer left pending by a failed exchange is sent
// again rather than replaced.
func (s *Session) RestartICE(ctx context.Context) error {
	if s.PC.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		if err := s.offer(ctx, &webrtc.OfferOptions{ICERestart: true}); err != nil {
			return err
		}
	}
	frag := fragmentOf(s.PC.LocalDescription().SDP)
	resp, answer, err := s.exchange(ctx, http.MethodPatch, s.Resource, "application/trickle-ice-sdpfrag", frag, http.StatusOK)
	if err != nil {
		return err
	}
	s.ETag = resp.Header.Get("ETag")
	remote := s.PC.RemoteDescription()
	if remote == nil {
		return fmt.Errorf("no remote description")
	}
	return s.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: applyFragment(remote.SDP, answer)})
}

// fragmentOf extracts credentials, media sections' mids and candidates.
func fragmentOf(sdp string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"), strings.HasPrefix(l, "a=ice-pwd:"):
			if !seen[l[:9]] {
				seen[l[:9]] = true
				b.WriteString(l + "\r\n")
			}
		case strings.HasPrefix(l, "m="), strings.HasPrefix(l, "a=mid:"), strings.HasPrefix(l, "a=candidate:"):
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// applyFragment replaces the credentials and candidates of an SDP with a
// fragment's (every media section shares the bundle transport).
func applyFragment(sdp, frag string) string {
	var ufrag, pwd string
	var cands []string
	for _, l := range strings.Split(frag, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			ufrag = l
		case strings.HasPrefix(l, "a=ice-pwd:"):
			pwd = l
		case strings.HasPrefix(l, "a=candidate:"):
			cands = append(cands, l)
		}
	}
	var out []string
	inMedia := false
	flush := func() {
		if inMedia {
			out = append(out, cands...)
		}
	}
	for _, l := range strings.Split(strings.TrimRight(sdp, "\r\n"), "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "m="):
			flush()
			inMedia = true
		case strings.HasPrefix(l, "a=ice-ufrag:") && ufrag != "":
			l = ufrag
		case strings.HasPrefix(l, "a=ice-pwd:") && pwd != "":
			l = pwd
		case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates":
			continue
		}
		out = append(out, l)
	}
	flush()
	return strings.Join(out, "\r\n") + "\r\n"
}
