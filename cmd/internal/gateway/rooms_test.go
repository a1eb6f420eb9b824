package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/web/auth"
)

// roomToken mints a token with a display name.
func roomToken(t *testing.T, room, identity, name string, grants ...string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testKey), auth.Request{Room: room, Identity: identity, Name: name, Grants: grants, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// apiCall sends a request and returns the status, the decoded JSON body and
// the response headers.
func apiCall(t *testing.T, method, url, tok, body string) (int, map[string]any, http.Header) {
	t.Helper()
	contentType := ""
	if body != "" {
		contentType = "application/json"
	}
	resp, b := fetch(t, method, url, body, "Content-Type", contentType, "Authorization", bearer(tok))
	var out map[string]any
	if len(b) > 0 && json.Unmarshal([]byte(b), &out) != nil {
		t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, out, resp.Header
}

func chatBody(text string) string {
	b, _ := json.Marshal(map[string]string{"text": text})
	return string(b)
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID   uint64
	Type string
	Data map[string]any
}

// sseStream reads a room's event stream.
type sseStream struct {
	cancel context.CancelFunc
	events chan sseEvent
	done   chan struct{}
}

// openEvents connects to url and returns the stream, or the status and
// error body of a refused request.
func openEvents(t *testing.T, url, bearer string) (*sseStream, int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	// No client timeout: it would cut the stream.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return nil, resp.StatusCode, body
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("event stream Content-Type %q", ct)
	}
	s := &sseStream{cancel: cancel, events: make(chan sseEvent, 1024), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.events)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			k, v, _ := strings.Cut(line, ": ")
			switch {
			case line == "":
				if ev.Type != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case k == "id":
				ev.ID, _ = strconv.ParseUint(v, 10, 64)
			case k == "event":
				ev.Type = v
			case k == "data":
				_ = json.Unmarshal([]byte(v), &ev.Data)
			}
		}
	}()
	t.Cleanup(s.close)
	return s, http.StatusOK, nil
}

func (s *sseStream) close() {
	s.cancel()
	<-s.done
}

// waitEvent skips events until one of type typ for which match holds.
func (s *sseStream) waitEvent(t *testing.T, typ string, match func(map[string]any) bool) sseEvent {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var seen []string
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("event stream ended waiting for %s; saw %v", typ, seen)
			}
			seen = append(seen, ev.Type)
			if ev.Type == typ && (match == nil || match(ev.Data)) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 5 s; saw %v", typ, seen)
		}
	}
}

func hostsOf(data map[string]any) []string {
	var out []string
	hosts, _ := data["hosts"].([]any)
	for _, h := range hosts {
		h := h.(map[string]any)
		var streams []string
		for _, s := range h["streams"].([]any) {
			s := s.(map[string]any)
			streams = append(streams, fmt.Sprintf("%s:%s", s["name"], s["state"]))
		}
		out = append(out, fmt.Sprintf("%s(%s)[%s]", h["identity"], h["name"], strings.Join(streams, " ")))
	}
	return out
}

func TestRoomsAccess(t *testing.T) {
	g := startGateway(t, func(c *Config) {
		c.AuthMode, c.AuthKey, c.AdminKey = "on", testKey, "admin-secret-0123456789"
		c.ChatRate, c.ChatBurst = 1, 5
	})
	sub := roomToken(t, "r1", "v", "", auth.GrantSubscribe)
	pub := roomToken(t, "r1", "alice", "", auth.GrantPublish)
	chatOnly := roomToken(t, "r1", "c", "", auth.GrantChat)
	other := roomToken(t, "r2", "v", "", auth.GrantSubscribe, auth.GrantChat)
	admin := roomToken(t, "", "ops", "", auth.GrantAdmin)
	for _, tc := range []struct {
		url, bearer string
		want        int
	}{
		{"/api/v1/rooms", "", 401},
		{"/api/v1/rooms", sub, 403},
		{"/api/v1/rooms", "admin-secret-0123456789", 200},
		{"/api/v1/rooms", admin, 200},
		{"/api/v1/rooms/r1", "", 401},
		{"/api/v1/rooms/r1", "garbage", 401},
		{"/api/v1/rooms/r1", other, 403},
		{"/api/v1/rooms/r1", chatOnly, 403},
		{"/api/v1/rooms/r1", sub, 200},
		{"/api/v1/rooms/r1", pub, 200},
		{"/api/v1/rooms/r1", admin, 200},
		{"/api/v1/rooms/r1", "admin-secret-0123456789", 200},
		{"/api/v1/rooms/bad.room", sub, 400},
		{"/api/v1/rooms/r1/events", "", 401},
		{"/api/v1/rooms/r1/events", other, 403},
		{"/api/v1/me", "", 401},
		{"/api/v1/me", sub, 200},
	} {
		status, body, _ := apiCall(t, http.MethodGet, g.base+tc.url, tc.bearer, "")
		if status != tc.want {
			t.Errorf("GET %s: %d %v, want %d", tc.url, status, body, tc.want)
		}
		if status >= 400 && (body["code"] == nil || body["error"] == nil) {
			t.Errorf("GET %s: error body %v is not {code, error}", tc.url, body)
		}
	}
	_, me, _ := apiCall(t, http.MethodGet, g.base+"/api/v1/me", sub, "")
	if me["identity"] != "v" || me["room"] != "r1" || me["open"] != false {
		t.Errorf("me: %v", me)
	}

	// EventSource cannot set headers: the token may come in the query.
	if _, status, body := openEvents(t, g.base+"/api/v1/rooms/r1/events?access_token=garbage", ""); status != 401 {
		t.Errorf("events with a bad query token: %d %v", status, body)
	}
	s, status, body := openEvents(t, g.base+"/api/v1/rooms/r1/events?access_token="+sub, "")
	if status != 200 {
		t.Fatalf("events with a query token: %d %v", status, body)
	}
	s.waitEvent(t, "snapshot", nil)

	chat := func(bearer, room, body string) (int, map[string]any, http.Header) {
		return apiCall(t, http.MethodPost, g.base+"/api/v1/rooms/"+room+"/chat", bearer, body)
	}
	talker := roomToken(t, "r1", "bob", "Bob", auth.GrantSubscribe, auth.GrantChat)
	for _, tc := range []struct {
		name, bearer, room, body string
		want                     int
		code                     string
	}{
		{"no token", "", "r1", chatBody("hi"), 401, "unauthorized"},
		{"no chat grant", sub, "r1", chatBody("hi"), 403, "forbidden"},
		{"other room", other, "r1", chatBody("hi"), 403, "forbidden"},
		{"too long", talker, "r1", chatBody(strings.Repeat("x", 2049)), 413, "chat_too_long"},
		{"body too large", talker, "r1", chatBody(strings.Repeat("\x01", 4000)), 413, "body_too_large"},
		{"empty", talker, "r1", chatBody(" \n "), 400, "bad_chat"},
		{"not JSON", talker, "r1", "hi", 400, "bad_json"},
		{"unknown field", talker, "r1", `{"text":"hi","x":1}`, 400, "bad_json"},
		{"2 KB", talker, "r1", chatBody(strings.Repeat("é", 1024)), 201, ""},
	} {
		status, body, _ := chat(tc.bearer, tc.room, tc.body)
		if status != tc.want || (tc.code != "" && body["code"] != tc.code) {
			t.Errorf("chat %s: %d %v, want %d %s", tc.name, status, body, tc.want, tc.code)
		}
	}
	// The sender is the token's identity, whatever the body says.
	status, msg, _ := chat(talker, "r1", `{"text":"hello","identity":"mallory","name":"Mallory"}`)
	if status != 201 || msg["identity"] != "bob" || msg["name"] != "Bob" || msg["verified"] != true {
		t.Fatalf("chat: %d %v", status, msg)
	}
	ev := s.waitEvent(t, "chat", func(d map[string]any) bool { return d["text"] == "hello" })
	if ev.Data["identity"] != "bob" || uint64(ev.Data["id"].(float64)) != ev.ID {
		t.Fatalf("chat event %+v", ev)
	}
	// Rate limit: 5 at once (two are sent), then 429 with Retry-After.
	for i := range 3 {
		if status, body, _ := chat(talker, "r1", chatBody(fmt.Sprint(i))); status != 201 {
			t.Fatalf("chat %d: %d %v", i, status, body)
		}
	}
	status, body, h := chat(talker, "r1", chatBody("one too many"))
	if status != 429 || body["code"] != "rate_limited" || h.Get("Retry-After") == "" {
		t.Fatalf("6th message at once: %d %v Retry-After %q", status, body, h.Get("Retry-After"))
	}
	// Others may still talk.
	if status, body, _ := chat(roomToken(t, "r1", "carol", "", auth.GrantChat), "r1", chatBody("hi")); status != 201 {
		t.Fatalf("another identity: %d %v", status, body)
	}
}

// A host's stream comes and goes in the room's events, with the display
// name from the publisher's token; viewer counts follow; late joiners get a
// snapshot with hosts and the chat history, which is bounded.
func TestRoomEventsFollowHosts(t *testing.T) {
	g := startGateway(t, func(c *Config) {
		c.AuthMode, c.AuthKey, c.History, c.ChatRate = "on", testKey, 3, 0
	})
	watcher := roomToken(t, "r1", "w", "", auth.GrantSubscribe, auth.GrantChat)
	early, status, _ := openEvents(t, g.base+"/api/v1/rooms/r1/events", watcher)
	if status != 200 {
		t.Fatalf("events: %d", status)
	}
	early.waitEvent(t, "snapshot", func(d map[string]any) bool { return len(hostsOf(d)) == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := clientOpts(t)
	o.Token = roomToken(t, "r1", "alice", "Alice A.", auth.GrantPublish)
	p, err := rtcclient.Publish(ctx, g.base+"/whip/r1/alice", o, rtcclient.H264ConstrainedBaseline, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	waitConnected(t, p.PC)
	ev := early.waitEvent(t, "host_joined", nil)
	if ev.Data["identity"] != "alice" || ev.Data["name"] != "Alice A." {
		t.Fatalf("host_joined %v", ev.Data)
	}
	ev = early.waitEvent(t, "stream_up", nil)
	if st := ev.Data["stream"].(map[string]any); st["path"] != "r1/alice" || st["state"] != "live" {
		t.Fatalf("stream_up %v", ev.Data)
	}
	// The screen share is the same host's second stream.
	ps, err := rtcclient.Publish(ctx, g.base+"/whip/r1/alice-screen", o, rtcclient.H264ConstrainedBaseline, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close(context.Background())
	ev = early.waitEvent(t, "stream_up", nil)
	if ev.Data["identity"] != "alice" || ev.Data["stream"].(map[string]any)["screen"] != true {
		t.Fatalf("screen stream_up %v", ev.Data)
	}

	// A viewer is counted (announced at most once a second).
	pctx, stopPlay := context.WithCancel(context.Background())
	played := make(chan struct{})
	go func() { defer close(played); play(pctx, p, loadClip(t), 0) }()
	defer func() { stopPlay(); <-played }()
	o.Token = watcher
	v, err := rtcclient.Connect(ctx, g.base+"/whep/r1/alice", o, recvonlySetup)
	if err != nil {
		t.Fatal(err)
	}
	early.waitEvent(t, "viewers", func(d map[string]any) bool {
		return d["viewers"] == 1.0 && d["streams"].(map[string]any)["alice"] == 1.0
	})

	for i := range 5 {
		if status, body, _ := apiCall(t, http.MethodPost, g.base+"/api/v1/rooms/r1/chat", watcher, chatBody(fmt.Sprint("m", i))); status != 201 {
			t.Fatalf("chat: %d %v", status, body)
		}
	}
	early.waitEvent(t, "chat", func(d map[string]any) bool { return d["text"] == "m4" })

	// A late joiner starts from a snapshot: hosts, viewers, the last 3 messages.
	late, _, _ := openEvents(t, g.base+"/api/v1/rooms/r1/events", watcher)
	snap := late.waitEvent(t, "snapshot", nil)
	if h := hostsOf(snap.Data); len(h) != 1 || h[0] != "alice(Alice A.)[alice:live alice-screen:live]" {
		t.Fatalf("snapshot hosts %v", h)
	}
	var texts []string
	for _, m := range snap.Data["chat"].([]any) {
		texts = append(texts, m.(map[string]any)["text"].(string))
	}
	if strings.Join(texts, ",") != "m2,m3,m4" || snap.Data["viewers"] != 1.0 {
		t.Fatalf("snapshot chat %v viewers %v", texts, snap.Data["viewers"])
	}
	status, room, _ := apiCall(t, http.MethodGet, g.base+"/api/v1/rooms/r1", watcher, "")
	if status != 200 || fmt.Sprint(hostsOf(room)) != "[alice(Alice A.)[alice:live alice-screen:live]]" || room["subscribers"] != 2.0 {
		t.Fatalf("GET room: %d %v", status, room)
	}

	_ = v.Close(context.Background())
	early.waitEvent(t, "viewers", func(d map[string]any) bool { return d["viewers"] == 0.0 })

	// Hanging up (DELETE) removes the stream at once, though the relay
	// keeps it for the grace period (10 s here).
	start := time.Now()
	_ = ps.Close(context.Background())
	ev = late.waitEvent(t, "stream_down", nil)
	if ev.Data["reason"] != "left" || ev.Data["stream"].(map[string]any)["name"] != "alice-screen" {
		t.Fatalf("stream_down %v", ev.Data)
	}
	stopPlay()
	<-played
	_ = p.Close(context.Background())
	late.waitEvent(t, "host_left", func(d map[string]any) bool { return d["identity"] == "alice" })
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("hosts left after %v", d)
	}
	if _, ok := g.Hub().Get("r1/alice"); !ok {
		t.Fatal("the relay should still keep the stream in its grace period")
	}
	_, room, _ = apiCall(t, http.MethodGet, g.base+"/api/v1/rooms/r1", watcher, "")
	if len(hostsOf(room)) != 0 {
		t.Fatalf("room after the host left: %v", room)
	}
}

// In open (development) mode, chat takes the identity from the body and
// marks it unverified; the page needs no token.
func TestRoomChatOpen(t *testing.T) {
	g := startGateway(t, nil)
	status, me, _ := apiCall(t, http.MethodGet, g.base+"/api/v1/me", "", "")
	if status != 200 || me["open"] != true {
		t.Fatalf("me: %d %v", status, me)
	}
	s, _, _ := openEvents(t, g.base+"/api/v1/rooms/dev/events", "")
	s.waitEvent(t, "snapshot", nil)
	status, msg, _ := apiCall(t, http.MethodPost, g.base+"/api/v1/rooms/dev/chat", "", `{"text":"hi","identity":"ann","name":" Ann\u0007 "}`)
	if status != 201 || msg["identity"] != "ann" || msg["name"] != "Ann" || msg["verified"] != false {
		t.Fatalf("chat: %d %v", status, msg)
	}
	s.waitEvent(t, "chat", func(d map[string]any) bool { return d["identity"] == "ann" && d["verified"] == false })
	if status, body, _ := apiCall(t, http.MethodPost, g.base+"/api/v1/rooms/dev/chat", "", `{"text":"hi","identity":"a b"}`); status != 400 {
		t.Fatalf("bad identity: %d %v", status, body)
	}
	// Pages at /host/ROOM and /watch/ROOM.
	for _, p := range []string{"/host/dev", "/watch/dev", "/host", "/watch?room=dev", "/host.html", "/watch.html", "/"} {
		resp, err := httpClient.Get(g.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// Room event streams do not hold up shutdown, and do not hit the server's
// read timeout.
func TestRoomEventsEndAtShutdown(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.ShutdownTimeout = 10 * time.Second })
	s, _, _ := openEvents(t, g.base+"/api/v1/rooms/r/events", "")
	s.waitEvent(t, "snapshot", nil)
	start := time.Now()
	g.cancel()
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not stop within 5 s with an open event stream")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v with an open event stream", d)
	}
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		t.Fatal("event stream still open after shutdown")
	}
	g.done <- nil // for the cleanup's stop
}
