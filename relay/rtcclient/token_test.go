package rtcclient

import (
	"net/http"
	"testing"
)

// Found: the cluster key went to whatever host the parent's Location
// named. The token goes only to the endpoint's own origin.
func TestTokenOnlyToEndpointOrigin(t *testing.T) {
	s := &Session{opts: Options{Token: "cluster-key-0123456789"}, origin: originOf("http://parent.example:8080/whep/r/a")}
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"http://parent.example:8080/whep/r/a/0123", true},
		{"HTTP://Parent.Example:8080/whep/r/a/0123", true},
		{"http://elsewhere.example:8080/whep/r/a/0123", false},
		{"http://parent.example:9090/whep/r/a/0123", false},
		{"https://parent.example:8080/whep/r/a/0123", false},
		{"http://parent.example.attacker.example:8080/x", false},
	} {
		req, err := http.NewRequest(http.MethodDelete, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.setToken(req)
		if got := req.Header.Get("Authorization") != ""; got != tc.want {
			t.Errorf("%s: token sent %v, want %v", tc.url, got, tc.want)
		}
	}
}
