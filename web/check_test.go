package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingSelfTest keeps the offers that reach the self-test.
type recordingSelfTest struct {
	mu     sync.Mutex
	offers []string
}

func (t *recordingSelfTest) Check(_ context.Context, offer, _ string, _ time.Duration) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.offers = append(t.offers, offer)
	return "v=0\r\n", nil
}

func (t *recordingSelfTest) MediaPorts() (int, int) { return 8443, 8443 }

// Found: /check/ice took unauthenticated offers without screening their
// candidates, so anyone could make the gateway send connectivity checks
// to multicast, broadcast or internal addresses, as many as it liked.
func TestSelfTestScreensCandidates(t *testing.T) {
	st := &recordingSelfTest{}
	s := newTestServer(t, Params{SelfTest: st, Limits: Limits{RefusePrivateCandidates: true, CandidatesPerSession: 3}})
	sdp := map[string]string{"Content-Type": "application/sdp"}
	cand := func(addr string) string { return "a=candidate:1 1 udp 2130706431 " + addr + " 4000 typ host\r\n" }
	offer := minimalOffer + cand("203.0.113.5") + cand("224.0.0.1") + cand("10.0.0.1") + cand("127.0.0.1")
	if rec := call(s, http.MethodPost, "/check/ice/udp", "198.51.100.7:5000", "gw.example", sdp, offer); rec.Code != http.StatusCreated {
		t.Fatalf("test offer: %d %s", rec.Code, rec.Body)
	}
	st.mu.Lock()
	got := st.offers[0]
	st.mu.Unlock()
	if !strings.Contains(got, "203.0.113.5") || strings.Contains(got, "224.0.0.1") || strings.Contains(got, "10.0.0.1") || strings.Contains(got, " 127.0.0.1 4000") {
		t.Fatalf("candidates reaching the self-test:\n%s", got)
	}
	many := minimalOffer + cand("203.0.113.5") + cand("203.0.113.6") + cand("203.0.113.7") + cand("203.0.113.8")
	if rec := call(s, http.MethodPost, "/check/ice/udp", "198.51.100.7:5000", "gw.example", sdp, many); rec.Code != http.StatusBadRequest {
		t.Fatalf("4 candidates with a budget of 3: %d", rec.Code)
	}
}

// Found: the engine runs 32 test connections for 8 s each and one address
// could take all of them, breaking /check for everyone else.
func TestSelfTestCapsChecksPerAddress(t *testing.T) {
	s := newTestServer(t, Params{SelfTest: &recordingSelfTest{}})
	sdp := map[string]string{"Content-Type": "application/sdp"}
	offer := minimalOffer + "a=candidate:1 1 udp 2130706431 203.0.113.5 4000 typ host\r\n"
	post := func(remote string) *httptest.ResponseRecorder {
		return call(s, http.MethodPost, "/check/ice/udp", remote, "gw.example", sdp, offer)
	}
	for i := 0; i < checksPerAddress; i++ {
		if rec := post("[2001:db8:1:2::1]:5000"); rec.Code != http.StatusCreated {
			t.Fatalf("test %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	// Another address of the same /64 is the same client.
	rec := post("[2001:db8:1:2::99]:5000")
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Header().Get("Content-Type"), "application/json") ||
		!strings.Contains(rec.Body.String(), "too_many_checks_from_address") {
		t.Fatalf("test %d from the same /64: %d %q %s", checksPerAddress+1, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	for _, other := range []string{"[2001:db8:1:3::1]:5000", "198.51.100.7:5000"} {
		if rec := post(other); rec.Code != http.StatusCreated {
			t.Fatalf("test from %s while another client is at its cap: %d %s", other, rec.Code, rec.Body)
		}
	}
}
