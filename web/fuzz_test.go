package web

import (
	"strings"
	"testing"
)

// FuzzOfferScreening: whatever a client sends as an offer or a trickle
// fragment, checking and screening it never panics, and what is kept
// names no address that must never be checked.
func FuzzOfferScreening(f *testing.F) {
	f.Add(minimalOffer)
	f.Add("a=ice-ufrag:x\r\na=candidate:1 1 udp 1 224.0.0.1 9 typ host\r\n")
	f.Add("a=candidate:1 1 udp 1 abc.local 70000 typ host\na=candidate:")
	s := New(Params{})
	f.Fuzz(func(t *testing.T, body string) {
		_ = checkOffer(body)
		out, n := s.screenCandidates(body)
		if n > strings.Count(out, "a=candidate:") {
			t.Fatalf("counted %d candidates in %q", n, out)
		}
		for _, bad := range []string{" 224.0.0.1 ", " 255.255.255.255 ", " 0.0.0.0 "} {
			if strings.Contains(out, bad) && !strings.Contains(body, bad+"x") {
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "a=candidate:")); strings.HasPrefix(strings.TrimSpace(l), "a=candidate:") && len(f) >= 8 && " "+f[4]+" " == bad {
						t.Fatalf("kept a candidate for %s: %q", bad, l)
					}
				}
			}
		}
	})
}
