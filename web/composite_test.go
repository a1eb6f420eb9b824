package web

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/livegate/livegate/egress/composite"
	"github.com/livegate/livegate/egress/rtmp"
	"github.com/livegate/livegate/web/auth"
)

type oneComposite struct{ in composite.Info }

func (c oneComposite) Start(string, composite.Options) (composite.Info, bool, error) {
	return c.in, false, nil
}
func (c oneComposite) Stop(string) (composite.Info, error) { return c.in, nil }
func (c oneComposite) Get(string) (composite.Info, error)  { return c.in, nil }
func (c oneComposite) List() []composite.Info              { return []composite.Info{c.in} }

type onePush struct{ j rtmp.Info }

func (p onePush) Start(string, string, bool) (rtmp.Info, error) { return p.j, nil }
func (p onePush) List() []rtmp.Info                             { return []rtmp.Info{p.j} }
func (p onePush) Stop(string) (rtmp.Info, error)                { return p.j, nil }

// Every viewer of a room holds a token that reads the room, so the
// composite's push targets (the CDN's app path) and their errors (which
// can name the stream) are for admins; viewers see only where it goes.
func TestCompositePushDetailsAreForAdmins(t *testing.T) {
	const full = "rtmp://live.example.com/app/****"
	s := newTestServer(t, Params{Auth: AuthParams{Mode: AuthOn, Key: []byte(testSigningKey), AdminKey: testAdminKey},
		Composite: oneComposite{composite.Info{Room: "show", Stream: "show/composite", State: "live"}},
		Egress:    onePush{rtmp.Info{ID: "1", Stream: "show/composite", URL: full, State: "reconnecting", LastError: "stream show-secret-name refused"}}})
	viewer, err := auth.Mint([]byte(testSigningKey), auth.Request{Room: "show", Identity: "v", Grants: []string{auth.GrantSubscribe}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who, bearer, url, lastError string
	}{
		{"viewer", viewer, "rtmp://live.example.com", ""},
		{"admin", testAdminKey, full, "stream show-secret-name refused"},
	} {
		rec := call(s, http.MethodGet, "/api/v1/rooms/show/composite", "198.51.100.7:5000", "gateway.example",
			map[string]string{"Authorization": "Bearer " + tc.bearer}, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.who, rec.Code, rec.Body)
		}
		var v compositeView
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || len(v.Pushes) != 1 {
			t.Fatalf("%s: %v %s", tc.who, err, rec.Body)
		}
		if p := v.Pushes[0]; p.URL != tc.url || p.LastError != tc.lastError {
			t.Errorf("%s sees push %q (last error %q), want %q (%q)", tc.who, p.URL, p.LastError, tc.url, tc.lastError)
		}
	}
}
