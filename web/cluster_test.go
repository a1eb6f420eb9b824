package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/rtc"
)

type fakeCluster struct {
	full bool
}

func (f *fakeCluster) Self() cluster.Node    { return cluster.Node{ID: "n1"} }
func (f *fakeCluster) DirectoryKind() string { return "redis" }
func (f *fakeCluster) Nodes(context.Context) []cluster.Node {
	return []cluster.Node{{ID: "n1", URL: "http://127.0.0.1:1", Role: cluster.RoleEdge, Load: cluster.Load{Viewers: 3}},
		{ID: "n2", URL: "http://127.0.0.1:2", Role: cluster.RoleOrigin}}
}
func (f *fakeCluster) Redirect(context.Context, int) (string, bool) {
	return "http://127.0.0.1:2", f.full
}

func TestClusterAPIAndRedirect(t *testing.T) {
	hub := relay.NewHub(relay.Params{})
	defer hub.Close()
	const ck = "cluster-key-0123456789"
	fc := &fakeCluster{}
	s := New(Params{Hub: hub, WHEP: noStreams{}, Cluster: fc, Auth: AuthParams{Mode: AuthAuto, ClusterKey: ck}})

	req := httptest.NewRequest(http.MethodGet, "/api/v1/cluster", nil)
	req.RemoteAddr = "127.0.0.1:5000" // auto mode without a key: local clients are admins
	req.Host = "127.0.0.1:8080"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	var body struct {
		Self      string         `json:"self"`
		Directory string         `json:"directory"`
		Nodes     []cluster.Node `json:"nodes"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
		t.Fatalf("GET /api/v1/cluster: %d %s", rec.Code, rec.Body)
	}
	if body.Self != "n1" || body.Directory != "redis" || len(body.Nodes) != 2 || body.Nodes[0].Load.Viewers != 3 {
		t.Fatalf("cluster: %s", rec.Body)
	}
	req = httptest.NewRequest(http.MethodGet, "/api/v1/cluster", nil)
	req.RemoteAddr = "192.0.2.1:5000"
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("remote client without a token: %d", rec.Code)
	}

	// A WHEP offer: redirected when full, except a relay link's.
	redirect := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/whep/room/cam?x=1", strings.NewReader(minimalOffer))
		req.Header.Set("Content-Type", "application/sdp")
		req.RemoteAddr, req.Host = "127.0.0.1:5000", "127.0.0.1:8080"
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}
	if rec := redirect(""); rec.Code != http.StatusNotFound {
		t.Fatalf("redirected while not full: %d", rec.Code)
	}
	fc.full = true
	rec = redirect("")
	if rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "http://127.0.0.1:2/whep/room/cam?x=1" {
		t.Fatalf("full node: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := redirect(ck); rec.Code != http.StatusNotFound {
		t.Fatalf("a relay link was redirected: %d", rec.Code)
	}
	if e := classify(fmt.Errorf("locating: %w", cluster.ErrUnavailable)); e.Status != http.StatusServiceUnavailable {
		t.Fatalf("directory down: %d, want 503", e.Status)
	}
}

// minimalOffer is the least an offer must be to reach the endpoint.
const minimalOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n"

// noStreams is a WHEP endpoint without streams.
type noStreams struct{}

func (noStreams) Offer(context.Context, string, string, string) (*rtc.Session, error) {
	return nil, relay.ErrNotFound
}
func (noStreams) Session(string, string) (*rtc.Session, error) { return nil, rtc.ErrSessionNotFound }
