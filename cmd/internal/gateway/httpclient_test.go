package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The tests' HTTP requests to a gateway: one way to send them and read
// the answer.

// fetch makes a request with the tests' HTTP client, with headers given
// as name, value pairs (a pair with an empty value is left out), and
// returns the response with its body read (and closed).
func fetch(t *testing.T, method, url, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, string(b)
}

// bearer is the Authorization header value for tok ("" for none).
func bearer(tok string) string {
	if tok == "" {
		return ""
	}
	return "Bearer " + tok
}

// getJSON GETs url and, when the answer is 200 OK, decodes its JSON body
// into v (failing the test if it is not JSON). It returns the status.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, body := fetch(t, http.MethodGet, url, "")
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v in %q", url, err, body)
		}
	}
	return resp.StatusCode
}

// metricsPage is g's /metrics.
func (g *testGateway) metricsPage(t *testing.T) string {
	t.Helper()
	resp, body := fetch(t, http.MethodGet, g.base+"/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return body
}
