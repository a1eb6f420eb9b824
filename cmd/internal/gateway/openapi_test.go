package gateway

import (
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
)

// Every /api/v1 route the gateway registers is described in the OpenAPI
// document it serves, with the right method; and what the document
// describes for the core API exists.
func TestOpenAPICoversRoutes(t *testing.T) {
	g := startGateway(t, nil)
	resp, err := httpClient.Get(g.base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var spec struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &spec); err != nil || !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	registered := map[string]bool{}
	for _, r := range g.web.Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || r.Method == "OPTIONS" { // CORS preflight
			continue
		}
		path := param.ReplaceAllString(r.Path, "{$1}")
		method := strings.ToLower(r.Method)
		registered[method+" "+path] = true
		if _, ok := spec.Paths[path][method]; !ok {
			t.Errorf("route %s %s is not in openapi.json", r.Method, path)
		}
	}
	for _, core := range []string{"post /api/v1/tokens", "get /api/v1/streams", "get /api/v1/streams/{room}/{name}",
		"get /api/v1/rooms/{room}", "post /api/v1/recordings", "get /api/v1/openapi.json"} {
		if !registered[core] {
			t.Errorf("openapi.json describes %s but the gateway does not serve it", core)
		}
	}
	// WHIP and WHEP answers carry the session's headers and the ICE
	// servers (Link, RFC 9725 section 4.6), as does the offer URL's OPTIONS.
	for _, offer := range []string{"/whip/{room}/{name}", "/whep/{room}/{name}"} {
		var desc struct {
			Post struct {
				Responses map[string]struct {
					Headers map[string]any `json:"headers"`
				} `json:"responses"`
			} `json:"post"`
			Options struct {
				Responses map[string]struct {
					Headers map[string]any `json:"headers"`
				} `json:"responses"`
			} `json:"options"`
		}
		raw, _ := json.Marshal(spec.Paths[offer])
		_ = json.Unmarshal(raw, &desc)
		for _, h := range []string{"Location", "ETag", "Accept-Patch", "Link"} {
			if _, ok := desc.Post.Responses["201"].Headers[h]; !ok {
				t.Errorf("openapi.json: POST %s 201 does not describe the %s header", offer, h)
			}
		}
		if _, ok := desc.Options.Responses["204"].Headers["Link"]; !ok {
			t.Errorf("openapi.json: OPTIONS %s does not describe the Link header", offer)
		}
	}
}
