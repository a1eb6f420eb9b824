package web

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/relay/rtc"
)

// Candidates a client sends (in its offer or trickled in PATCHes) make the
// gateway send connectivity checks to the addresses they name. They are
// screened here, at the edge: at most CandidatesPerSession per session,
// and never an address no client could own (unspecified, multicast,
// broadcast, reserved; with RefusePrivateCandidates also private,
// link-local and loopback), so that a client cannot aim the gateway's
// packets at third parties or at this machine's own services.

var (
	cgnat    = netip.MustParsePrefix("100.64.0.0/10")
	thisNet  = netip.MustParsePrefix("0.0.0.0/8")
	reserved = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
)

// candidateAllowed reports whether checks may be sent to addr.
func (s *Server) candidateAllowed(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		// Browsers hide host addresses behind mDNS names (which resolve to
		// addresses on the gateway's own network); any other name would
		// make the gateway resolve a name of the client's choosing.
		return !s.p.Limits.RefusePrivateCandidates && strings.HasSuffix(strings.ToLower(addr), ".local") && len(addr) <= 255
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified(), a.IsMulticast(), a.IsInterfaceLocalMulticast(), a.IsLinkLocalMulticast(),
		thisNet.Contains(a), reserved.Contains(a):
		return false
	case s.p.Limits.RefusePrivateCandidates &&
		(a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || cgnat.Contains(a)):
		return false
	}
	return true
}

// screenCandidates drops the candidate lines of an SDP offer or fragment
// whose address may not be checked, and counts the others.
func (s *Server) screenCandidates(text string) (string, int) {
	if !strings.Contains(text, "a=candidate:") {
		return text, 0
	}
	lines := strings.SplitAfter(text, "\n")
	out := lines[:0]
	n := 0
	for _, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if c, ok := strings.CutPrefix(t, "a=candidate:"); ok {
			f := strings.Fields(c)
			// foundation component transport priority address port "typ" type
			if len(f) >= 8 {
				port, err := strconv.Atoi(f[5])
				if err != nil || port <= 0 || port > 65535 || !s.candidateAllowed(f[4]) {
					continue
				}
			}
			n++
		}
		out = append(out, l)
	}
	return strings.Join(out, ""), n
}

// readOffer reads and checks an SDP offer and screens its candidates
// (ncand: how many it keeps), so that a refused offer has cost nothing
// yet: every offer the gateway takes (WHIP, WHEP, the self-test) comes
// this way.
func (s *Server) readOffer(c echo.Context) (offer string, ncand int, err error) {
	offer, err = s.body(c, mimeSDP)
	if err != nil {
		return "", 0, err
	}
	if err := checkOffer(offer); err != nil {
		return "", 0, err
	}
	offer, ncand = s.screenCandidates(offer)
	if ncand > s.limits.CandidatesPerSession {
		return "", 0, tooManyCandidates(s.limits.CandidatesPerSession)
	}
	return offer, ncand, nil
}

// candidateBudget counts the candidates each session accepted.
type candidateBudget struct {
	mu  sync.Mutex
	per map[*rtc.Session]int
}

func tooManyCandidates(limit int) error {
	return newError(http.StatusBadRequest, "too_many_candidates",
		"a session accepts at most "+strconv.Itoa(limit)+" ICE candidates (setting max-ice-candidates)")
}

// take adds n candidates to sess's count, refusing them above limit.
func (b *candidateBudget) take(sess *rtc.Session, n, limit int) error {
	if n == 0 {
		return nil
	}
	b.mu.Lock()
	if b.per == nil {
		b.per = map[*rtc.Session]int{}
	}
	used, tracked := b.per[sess]
	if used+n > limit {
		b.mu.Unlock()
		return tooManyCandidates(limit)
	}
	b.per[sess] = used + n
	b.mu.Unlock()
	if !tracked {
		// Outside the lock: for a session already closed, OnClose runs
		// forget at once.
		sess.OnClose(func() { b.forget(sess) })
	}
	return nil
}

func (b *candidateBudget) forget(sess *rtc.Session) {
	b.mu.Lock()
	delete(b.per, sess)
	b.mu.Unlock()
}
