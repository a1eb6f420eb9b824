package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/relay/rtcclient"
)

// waitFrames waits until v has reassembled at least n frames.
func (v *viewer) waitFrames(t *testing.T, timeout time.Duration, n int, what string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool {
		f, _, _ := v.snapshot()
		return len(f) >= n
	})
}

// waitReaders waits until path on g has n readers (viewers attached).
func waitReaders(t *testing.T, g *testGateway, path string, n int64) {
	t.Helper()
	st, ok := g.Hub().Get(path)
	if !ok {
		t.Fatalf("%s is not published", path)
	}
	waitFor(t, 5*time.Second, "viewers attached", func() bool { return st.Stats().Readers == n })
}

// waitStreamLive waits until path has a live publisher on g.
func (g *testGateway) waitStreamLive(t *testing.T, timeout time.Duration, path string) {
	t.Helper()
	waitFor(t, timeout, path+" live", func() bool {
		st, ok := g.Hub().Get(path)
		return ok && st.Live()
	})
}

// shutdown stops g as a signal does and fails the test unless Run returns
// cleanly within 5 s.
func (g *testGateway) shutdown(t *testing.T) {
	t.Helper()
	g.cancel()
	select {
	case err := <-g.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		g.done <- nil // for the cleanup's stop
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not stop within 5 s")
	}
}

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

// publishStatus publishes path with tryPublish and returns the WHIP status
// (201 when it worked, -1 when no answer came); a publisher that connected
// is closed when the test ends.
func (g *testGateway) publishStatus(t *testing.T, path, tok string) int {
	t.Helper()
	p, err := tryPublish(t, g, path, tok)
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return statusOf(err)
}

// stillOpen counts the connections the server has not closed: a read
// that times out (20 ms) rather than ending.
func stillOpen(conns []net.Conn) int {
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
		}
	}
	return open
}

// idleConns opens up to n TCP connections to addr that send nothing; they
// are closed when the test ends. It stops at the first refused one.
func idleConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		idle = append(idle, c)
	}
	return idle
}

// player is a WHIP publisher of the clip, playing it in real time.
type player struct {
	*rtcclient.Publisher
	cancel context.CancelFunc
	done   chan struct{}
	end    sync.Once
}

// playing publishes path on g and plays the clip, looping, until the
// player stops, leaves or drops; at the test's end it leaves.
func (g *testGateway) playing(t *testing.T, path string) *player {
	t.Helper()
	c := loadClip(t)
	p := &player{Publisher: g.publish(t, path), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		play(ctx, p.Publisher, c, 0)
	}()
	t.Cleanup(p.leave)
	return p
}

// stop ends the playing and waits for it; the session stays.
func (p *player) stop() {
	p.cancel()
	<-p.done
}

// leave stops and ends the session with a DELETE, as a host that leaves.
func (p *player) leave() {
	p.end.Do(func() {
		p.stop()
		_ = p.Close(context.Background())
	})
}

// drop stops and closes the connection without a DELETE, as when a
// host's network goes.
func (p *player) drop() {
	p.end.Do(func() {
		p.stop()
		_ = p.PC.Close()
	})
}

// liveHost starts a gateway (with mutate) and a Chromium host publishing
// path with o, and waits until the host is live.
func liveHost(t *testing.T, b *browser, mutate func(*Config), path string, o chromeHostOpts) (*testGateway, *chromeHost) {
	t.Helper()
	g := startGateway(t, mutate)
	h := g.startChromeHost(t, b, path, o)
	h.waitLive(t, 20*time.Second)
	return g, h
}
