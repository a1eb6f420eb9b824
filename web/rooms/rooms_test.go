package rooms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newManager(t *testing.T, p Params) *Manager {
	t.Helper()
	if p.Logger == nil {
		p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := New(p)
	t.Cleanup(m.Close)
	return m
}

func ev(typ relay.EventType, path string) relay.Event { return relay.Event{Type: typ, Path: path} }

// sent is a decoded SSE frame.
type sent struct {
	ID   uint64
	Type string
	Data map[string]any
}

func decode(t *testing.T, f []byte) sent {
	t.Helper()
	var s sent
	if !bytes.HasSuffix(f, []byte("\n\n")) {
		t.Fatalf("frame %q does not end with a blank line", f)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(f)), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "id":
			fmt.Sscan(v, &s.ID)
		case "event":
			s.Type = v
		case "data":
			if err := json.Unmarshal([]byte(v), &s.Data); err != nil {
				t.Fatalf("frame data %q: %v", v, err)
			}
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	return s
}

// next reads the subscriber's next frame.
func next(t *testing.T, s *Subscriber) sent {
	t.Helper()
	select {
	case f, ok := <-s.C():
		if !ok {
			t.Fatal("subscriber closed")
		}
		return decode(t, f)
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2 s")
	}
	return sent{}
}

func expectEvents(t *testing.T, s *Subscriber, want ...string) []sent {
	t.Helper()
	var got []sent
	var types []string
	for range want {
		e := next(t, s)
		got = append(got, e)
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID <= got[i-1].ID {
			t.Fatalf("event ids not increasing: %d after %d", got[i].ID, got[i-1].ID)
		}
	}
	return got
}

func hostNames(r Room) string {
	var out []string
	for _, h := range r.Hosts {
		var streams []string
		for _, s := range h.Streams {
			streams = append(streams, s.Name+":"+s.State)
		}
		out = append(out, h.Identity+"("+h.Name+")["+strings.Join(streams, " ")+"]")
	}
	return strings.Join(out, " ")
}

func TestHostsFollowStreams(t *testing.T) {
	m := newManager(t, Params{})
	sub, snap, err := m.Subscribe("demo")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if s := decode(t, snap); s.Type != EventSnapshot || len(s.Data["hosts"].([]any)) != 0 {
		t.Fatalf("first snapshot %+v", s)
	}

	m.Expect("demo/alice", "Alice")
	m.HandleEvent(ev(relay.StreamStarted, "demo/alice"))
	m.HandleEvent(ev(relay.StreamStarted, "demo/alice-screen"))
	m.HandleEvent(ev(relay.StreamStarted, "other/bob")) // another room
	m.sync()
	got := expectEvents(t, sub, EventHostJoined, EventStreamUp, EventStreamUp)
	if got[0].Data["identity"] != "alice" || got[0].Data["name"] != "Alice" {
		t.Fatalf("host_joined %v", got[0].Data)
	}
	if st := got[2].Data["stream"].(map[string]any); st["name"] != "alice-screen" || st["screen"] != true || st["path"] != "demo/alice-screen" {
		t.Fatalf("screen stream_up %v", st)
	}
	if h := hostNames(m.Get("demo")); h != "alice(Alice)[alice:live alice-screen:live]" {
		t.Fatalf("room: %s", h)
	}

	// The publisher drops and comes back within the grace period.
	m.HandleEvent(ev(relay.PublisherLeft, "demo/alice"))
	m.sync()
	expectEvents(t, sub, EventStreamReconn)
	if h := hostNames(m.Get("demo")); h != "alice(Alice)[alice:reconnecting alice-screen:live]" {
		t.Fatalf("room: %s", h)
	}
	m.HandleEvent(ev(relay.PublisherBack, "demo/alice"))
	m.sync()
	if e := expectEvents(t, sub, EventStreamUp); e[0].Data["resumed"] != true {
		t.Fatalf("stream_up after reconnect %v", e[0].Data)
	}

	// Screen share ends, then the camera: the host leaves with the last.
	m.HandleEvent(ev(relay.StreamEnded, "demo/alice-screen"))
	m.sync()
	expectEvents(t, sub, EventStreamDown)
	m.HandleEvent(ev(relay.PublisherLeft, "demo/alice"))
	m.HandleEvent(ev(relay.StreamEnded, "demo/alice"))
	m.sync()
	e := expectEvents(t, sub, EventStreamReconn, EventStreamDown, EventHostLeft)
	if e[1].Data["reason"] != "ended" || e[2].Data["identity"] != "alice" {
		t.Fatalf("stream_down %v host_left %v", e[1].Data, e[2].Data)
	}
	if h := hostNames(m.Get("demo")); h != "" {
		t.Fatalf("room after everyone left: %s", h)
	}
	if list := m.Rooms(); len(list) != 2 || list[0].Room != "demo" || hostNames(list[1]) != "bob(bob)[bob:live]" {
		t.Fatalf("rooms: %+v", list)
	}
}

// A host who hangs up leaves the room at once, though the relay keeps the
// stream in its grace period; a publisher that took over is not affected.
func TestHangup(t *testing.T) {
	m := newManager(t, Params{})
	m.HandleEvent(ev(relay.StreamStarted, "r/alice"))
	m.HandleEvent(ev(relay.StreamStarted, "r/bob"))
	m.sync()
	sub, _, _ := m.Subscribe("r")
	defer sub.Close()

	// bob's old session is deleted after a new one took over: stays.
	m.Hangup("r/bob")
	m.sync()
	if h := hostNames(m.Get("r")); h != "alice(alice)[alice:live] bob(bob)[bob:live]" {
		t.Fatalf("room: %s", h)
	}
	m.HandleEvent(ev(relay.PublisherLeft, "r/alice"))
	m.Hangup("r/alice")
	m.sync()
	e := expectEvents(t, sub, EventStreamReconn, EventStreamDown, EventHostLeft)
	if e[1].Data["reason"] != "left" {
		t.Fatalf("stream_down %v", e[1].Data)
	}
	// The relay ends the stream after the grace period: nothing more.
	m.HandleEvent(ev(relay.StreamEnded, "r/alice"))
	// alice comes back within the grace period: joins again.
	m.HandleEvent(ev(relay.StreamStarted, "r/alice2"))
	m.HandleEvent(ev(relay.PublisherBack, "r/alice"))
	m.sync()
	expectEvents(t, sub, EventHostJoined, EventStreamUp, EventHostJoined, EventStreamUp)
	if h := hostNames(m.Get("r")); h != "bob(bob)[bob:live] alice(alice)[alice:live] alice2(alice2)[alice2:live]" {
		t.Fatalf("room: %s", h)
	}
}

func TestViewerCountsAreCoalesced(t *testing.T) {
	m := newManager(t, Params{ViewerInterval: 20 * time.Millisecond})
	m.HandleEvent(ev(relay.StreamStarted, "r/alice"))
	m.sync()
	sub, _, _ := m.Subscribe("r")
	defer sub.Close()
	for range 5 {
		m.HandleEvent(ev(relay.ReaderJoined, "r/alice"))
	}
	m.HandleEvent(ev(relay.ReaderLeft, "r/alice"))
	m.sync()
	e := expectEvents(t, sub, EventViewers)
	if e[0].Data["viewers"] != 4.0 || e[0].Data["streams"].(map[string]any)["alice"] != 4.0 {
		t.Fatalf("viewers event %v", e[0].Data)
	}
	if r := m.Get("r"); r.Viewers != 4 || r.Hosts[0].Streams[0].Viewers != 4 {
		t.Fatalf("room %+v", r)
	}
	// Viewers of an ended stream still leave: counts pair up.
	m.HandleEvent(ev(relay.StreamEnded, "r/alice"))
	for range 4 {
		m.HandleEvent(ev(relay.ReaderLeft, "r/alice"))
	}
	m.HandleEvent(ev(relay.ReaderLeft, "r/alice")) // unmatched: ignored
	m.sync()
	if r := m.Get("r"); r.Viewers != 0 {
		t.Fatalf("viewers %d after all left", r.Viewers)
	}
}

func TestChatHistoryAndLateJoiners(t *testing.T) {
	m := newManager(t, Params{History: 3})
	alice := Sender{Identity: "alice", Name: "Alice", Verified: true}
	var ids []uint64
	for i := range 5 {
		msg, err := m.Chat("r", alice, fmt.Sprintf(" hello %d\n", i))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Text != fmt.Sprintf("hello %d", i) || msg.Name != "Alice" || !msg.Verified {
			t.Fatalf("message %+v", msg)
		}
		ids = append(ids, msg.ID)
	}
	sub, snap, err := m.Subscribe("r")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s := decode(t, snap)
	chat := s.Data["chat"].([]any)
	if len(chat) != 3 || chat[0].(map[string]any)["text"] != "hello 2" || chat[2].(map[string]any)["text"] != "hello 4" {
		t.Fatalf("late joiner's chat %v", chat)
	}
	if s.ID != ids[4] {
		t.Fatalf("snapshot id %d, want the last event's %d", s.ID, ids[4])
	}
	msg, _ := m.Chat("r", Sender{Identity: "bob"}, "hi")
	e := expectEvents(t, sub, EventChat)
	if e[0].ID != msg.ID || e[0].Data["text"] != "hi" || e[0].Data["name"] != "bob" || e[0].Data["verified"] != false {
		t.Fatalf("chat event %+v for %+v", e[0], msg)
	}
}

func TestChatDefaultHistoryIs100(t *testing.T) {
	m := newManager(t, Params{})
	for i := range 130 {
		if _, err := m.Chat("r", Sender{Identity: "a"}, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	r := m.Get("r")
	if len(r.Chat) != 100 || r.Chat[0].Text != "30" || r.Chat[99].Text != "129" {
		t.Fatalf("%d messages kept, first %q", len(r.Chat), r.Chat[0].Text)
	}
}

func TestChatChecks(t *testing.T) {
	m := newManager(t, Params{})
	a := Sender{Identity: "a"}
	for _, tc := range []struct {
		text string
		want error
	}{
		{strings.Repeat("x", 2048), nil},
		{strings.Repeat("é", 1024), nil},
		{strings.Repeat("x", 2049), ErrTooLong},
		{"  \n\t ", ErrEmpty},
		{"\x00\x07", ErrEmpty},
		{"bad \xff", ErrInvalidText},
	} {
		if _, err := m.Chat("r", a, tc.text); !errors.Is(err, tc.want) {
			t.Errorf("text of %d bytes: %v, want %v", len(tc.text), err, tc.want)
		}
	}
	msg, _ := m.Chat("r", a, "a\x1b[31mb")
	if msg.Text != "a[31mb" {
		t.Errorf("control characters kept: %q", msg.Text)
	}
}

func TestChatRateLimit(t *testing.T) {
	m := newManager(t, Params{ChatRate: 10, ChatBurst: 3})
	a, b := Sender{Identity: "a"}, Sender{Identity: "b"}
	for i := range 3 {
		if _, err := m.Chat("r", a, "x"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_, err := m.Chat("r", a, "x")
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > 100*time.Millisecond {
		t.Fatalf("4th message: %v", err)
	}
	if _, err := m.Chat("r", b, "x"); err != nil {
		t.Fatalf("another identity is limited too: %v", err)
	}
	if _, err := m.Chat("r2", a, "x"); err != nil {
		t.Fatalf("another room is limited too: %v", err)
	}
	time.Sleep(rl.RetryAfter + 10*time.Millisecond)
	if _, err := m.Chat("r", a, "x"); err != nil {
		t.Fatalf("after waiting: %v", err)
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	m := newManager(t, Params{SubscriberQueue: 2})
	slow, _, _ := m.Subscribe("r")
	defer slow.Close()
	fast, _, _ := m.Subscribe("r")
	defer fast.Close()
	for i := range 5 {
		if _, err := m.Chat("r", Sender{Identity: fmt.Sprint(i)}, "x"); err != nil {
			t.Fatal(err)
		}
		next(t, fast)
	}
	n := 0
	for range slow.C() {
		n++
	}
	if n != 2 || !slow.Dropped() || fast.Dropped() {
		t.Fatalf("slow subscriber got %d frames, dropped %v; fast dropped %v", n, slow.Dropped(), fast.Dropped())
	}
	if r := m.Get("r"); r.Subscribers != 1 {
		t.Fatalf("%d subscribers after the drop", r.Subscribers)
	}
}

func TestLimits(t *testing.T) {
	m := newManager(t, Params{MaxRooms: 2, MaxSubscribers: 2})
	a1, _, err := m.Subscribe("a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _, _ := m.Subscribe("a")
	if _, _, err := m.Subscribe("a"); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("third subscriber: %v", err)
	}
	b, _, _ := m.Subscribe("b")
	defer b.Close()
	if _, _, err := m.Subscribe("c"); !errors.Is(err, ErrTooManyRooms) {
		t.Fatalf("third room: %v", err)
	}
	if _, err := m.Chat("c", Sender{Identity: "x"}, "hi"); !errors.Is(err, ErrTooManyRooms) {
		t.Fatalf("chat in a third room: %v", err)
	}
	// Streams are never refused a room.
	m.HandleEvent(ev(relay.StreamStarted, "d/x"))
	m.sync()
	if len(m.Get("d").Hosts) != 1 {
		t.Fatal("stream's room missing")
	}
	// Once "a" is idle it may be evicted for a new room.
	a1.Close()
	a2.Close()
	c, _, err := m.Subscribe("c")
	if err != nil {
		t.Fatalf("new room after another became idle: %v", err)
	}
	c.Close()
	names := []string{}
	for _, r := range m.Rooms() {
		names = append(names, r.Room)
	}
	if strings.Join(names, ",") != "b,c,d" {
		t.Fatalf("rooms %v", names)
	}
}

func TestIdleRoomsExpire(t *testing.T) {
	m := newManager(t, Params{IdleTimeout: 50 * time.Millisecond, ViewerInterval: 10 * time.Millisecond})
	m.Chat("quiet", Sender{Identity: "a"}, "hi")
	m.HandleEvent(ev(relay.StreamStarted, "busy/a"))
	m.sync()
	deadline := time.Now().Add(2 * time.Second)
	for len(m.Rooms()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("idle room kept: %+v", m.Rooms())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.Rooms()[0].Room != "busy" {
		t.Fatalf("rooms %+v", m.Rooms())
	}
}

func TestCloseEndsSubscribers(t *testing.T) {
	m := New(Params{})
	s, _, _ := m.Subscribe("r")
	m.Close()
	if _, ok := <-s.C(); ok {
		t.Fatal("frame after close")
	}
	if s.Dropped() {
		t.Fatal("closed subscriber reported as dropped")
	}
	s.Close()
	m.Close()
	if _, _, err := m.Subscribe("r"); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	m.HandleEvent(ev(relay.StreamStarted, "r/a")) // ignored, does not block
}
