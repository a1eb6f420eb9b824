package web

import (
	"context"
	"net/http"
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
