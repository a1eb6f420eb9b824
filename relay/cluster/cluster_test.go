package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/cluster/clustertest"
	"github.com/livegate/livegate/relay/codec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testBeat = 100 * time.Millisecond
	testTTL  = 400 * time.Millisecond
)

func testLog() *slog.Logger {
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// dirs runs f against the in-memory and the Redis directory.
func dirs(t *testing.T, f func(t *testing.T, dir Directory)) {
	t.Run("memory", func(t *testing.T) {
		m := NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		f(t, m)
	})
	t.Run("redis", func(t *testing.T) {
		f(t, newRedisDir(t, clustertest.StartRedis(t)))
	})
}

// testNode is a member with its own hub and an adjustable load.
type testNode struct {
	*Member
	hub     *relay.Hub
	viewers atomic.Int64
	max     int
}

func newNode(t *testing.T, dir Directory, id string, role Role, max int) *testNode {
	t.Helper()
	n := &testNode{hub: relay.NewHub(relay.Params{Grace: -1, Logger: testLog()}), max: max}
	m, err := NewMember(MemberParams{Directory: dir, Hub: n.hub, ID: id, URL: "http://127.0.0.1:1/" + id, Role: role,
		Load:       func() Load { return Load{Viewers: n.viewers.Load(), MaxViewers: n.max} },
		MaxViewers: max, Heartbeat: testBeat, TTL: testTTL, Timeout: 300 * time.Millisecond, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	n.Member = m
	t.Cleanup(func() { m.Close(); n.hub.Close() })
	return n
}

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}

func (n *testNode) publish(t *testing.T, path string) *relay.Publication {
	t.Helper()
	p, err := n.hub.Publish(path, []relay.TrackInfo{{Kind: codec.Video, Codec: relay.Codec{MimeType: "video/H264", ClockRate: 90000}}}, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var waitFor = testenv.WaitFor

func ids(nodes []Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	sort.Strings(out)
	return out
}

func list(t *testing.T, dir Directory) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	nodes, err := dir.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ids(nodes)
}

// newRedisDir connects a directory to rs with a private key prefix.
func newRedisDir(t *testing.T, rs *clustertest.Redis) *Redis {
	t.Helper()
	r, err := NewRedis(rs.URL(), RedisOptions{Prefix: "test-" + t.Name() + ":", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Nodes register with their load and keep it fresh; a node that stops
// heartbeating disappears after the TTL, its streams with it; a node that
// leaves disappears at once.
func TestRegistrationHeartbeatTTL(t *testing.T) {
	dirs(t, func(t *testing.T, dir Directory) {
		a := newNode(t, dir, "a", RoleOrigin, 0)
		b := newNode(t, dir, "b", RoleEdge, 100)
		a.Start()
		b.Start()
		waitFor(t, 2*time.Second, "both nodes listed", func() bool { return equal(list(t, dir), []string{"a", "b"}) })

		b.viewers.Store(42)
		waitFor(t, 2*time.Second, "b's load refreshed", func() bool {
			for _, n := range a.Nodes(context.Background()) {
				if n.ID == "b" && n.Load.Viewers == 42 && n.Load.MaxViewers == 100 && n.URL == "http://127.0.0.1:1/b" && n.Role == RoleEdge {
					return true
				}
			}
			return false
		})

		// A node that dies without leaving: one heartbeat, then silence.
		ctx := context.Background()
		ghost := Node{ID: "ghost", URL: "http://127.0.0.1:1/ghost", Role: RoleOrigin}
		if err := dir.Heartbeat(ctx, ghost, []string{"g/s"}, testTTL); err != nil {
			t.Fatal(err)
		}
		if err := dir.AddStream(ctx, "ghost", "g/long", time.Minute); err != nil {
			t.Fatal(err)
		}
		if u, ok := a.Locate(ctx, "g/s"); !ok || u != ghost.URL {
			t.Fatalf("ghost's stream: %q %v", u, ok)
		}
		died := time.Now()
		waitFor(t, 3*testTTL, "the dead node expired", func() bool { return equal(list(t, dir), []string{"a", "b"}) })
		if d := time.Since(died); d < testTTL/2 {
			t.Fatalf("dead node gone after %v, before its TTL %v", d, testTTL)
		}
		t.Logf("dead node gone %v after its last heartbeat (TTL %v)", time.Since(died).Round(time.Millisecond), testTTL)
		for _, p := range []string{"g/s", "g/long"} { // g/long: its node is dead
			if _, ok := a.Locate(ctx, p); ok {
				t.Fatalf("%s still located on a dead node", p)
			}
		}
		// The live nodes stay listed across many TTLs.
		time.Sleep(3 * testTTL)
		if got := list(t, dir); !equal(got, []string{"a", "b"}) {
			t.Fatalf("live nodes expired: %v", got)
		}
		b.Close()
		if got := list(t, dir); !equal(got, []string{"a"}) {
			t.Fatalf("after b left: %v", got)
		}
	})
}

// Streams published on a node are located there from other nodes (never
// from itself); relayed streams are not advertised; an ended stream is
// removed at once, without waiting for its TTL.
func TestStreamsAndLocate(t *testing.T) {
	dirs(t, func(t *testing.T, dir Directory) {
		var relaying atomic.Bool
		o := newNode(t, dir, "o", RoleOrigin, 0)
		e := newNode(t, dir, "e", RoleEdge, 0)
		e.p.Relayed = func(p string) bool { return p == "x/pulled" && relaying.Load() }
		o.Start()
		e.Start()
		ctx := context.Background()

		pub := o.publish(t, "x/cam")
		waitFor(t, time.Second, "x/cam located", func() bool { u, ok := e.Locate(ctx, "x/cam"); return ok && u == o.p.URL })
		ps, err := e.Parents(ctx, "x/cam")
		if err != nil || len(ps) != 1 || ps[0] != o.p.URL {
			t.Fatalf("edge's parents for x/cam: %v %v", ps, err)
		}
		if ps, err := o.Parents(ctx, "x/cam"); err != nil || len(ps) != 0 {
			t.Fatalf("origin must not pull from itself: %v %v", ps, err)
		}
		if ps, err := e.Parents(ctx, "x/none"); err != nil || len(ps) != 0 {
			t.Fatalf("missing stream: %v %v", ps, err)
		}

		relaying.Store(true)
		e.publish(t, "x/pulled") // as tree.Puller would
		time.Sleep(3 * testBeat)
		if _, ok := o.Locate(ctx, "x/pulled"); ok {
			t.Fatal("a relayed stream was advertised")
		}

		ended := time.Now()
		pub.End("test")
		waitFor(t, time.Second, "x/cam removed", func() bool { _, ok := e.Locate(ctx, "x/cam"); return !ok })
		if d := time.Since(ended); d > testTTL {
			t.Fatalf("ended stream removed after %v, by expiry instead of at once", d)
		}
		time.Sleep(3 * testBeat) // and no heartbeat brings it back
		if _, ok := e.Locate(ctx, "x/cam"); ok {
			t.Fatal("ended stream came back")
		}
	})
}

// LeastLoaded picks the edge with the most room; Redirect answers only
// when this node is full, and spreads a burst over the edges until they
// are full too.
func TestLeastLoadedAndRedirect(t *testing.T) {
	dirs(t, func(t *testing.T, dir Directory) {
		o := newNode(t, dir, "o", RoleOrigin, 0)
		self := newNode(t, dir, "e0", RoleEdge, 2)
		e1 := newNode(t, dir, "e1", RoleEdge, 4)
		e2 := newNode(t, dir, "e2", RoleEdge, 2)
		e1.viewers.Store(2) // 50 %
		e2.viewers.Store(0) // 0 %
		for _, n := range []*testNode{o, self, e1, e2} {
			n.Start()
		}
		ctx := context.Background()
		waitFor(t, 2*time.Second, "four nodes", func() bool { return len(list(t, dir)) == 4 })
		waitFor(t, 2*time.Second, "loads known", func() bool {
			n, ok := self.LeastLoaded(ctx, "e0")
			return ok && n.ID == "e2"
		})
		if n, ok := self.LeastLoaded(ctx, "e0", "e2"); !ok || n.ID != "e1" {
			t.Fatalf("least loaded without e2: %v %v", n.ID, ok)
		}

		time.Sleep(2 * testBeat) // Redirect uses the node list of the last heartbeat
		if u, ok := self.Redirect(ctx, 0); ok {
			t.Fatalf("redirected while not full: %s", u)
		}
		self.viewers.Store(2) // full
		// Until the next heartbeat: e2 (0/2), e2 (1/2 = e1's 2/4: by ID e1), ...
		var got []string
		for {
			u, ok := self.Redirect(ctx, 0)
			if !ok {
				break
			}
			got = append(got, u)
			if len(got) > 10 {
				t.Fatal("redirects do not stop when every edge is full")
			}
		}
		// e1 has room for 2 more, e2 for 2: four redirects, never to the
		// origin or to itself.
		if len(got) != 4 {
			t.Fatalf("redirects: %v", got)
		}
		count := map[string]int{}
		for _, u := range got {
			count[u]++
		}
		if count[e1.p.URL] != 2 || count[e2.p.URL] != 2 {
			t.Fatalf("redirects not spread by room: %v", count)
		}
		if got[0] != e2.p.URL {
			t.Fatalf("first redirect went to %s, not the least loaded edge", got[0])
		}
	})
}

// Redis restarted empty mid-way: calls fail fast meanwhile, media (the hub)
// is not held up, and one heartbeat after it is back the directory is whole
// again, including a stream published during the outage.
func TestRedisRestart(t *testing.T) {
	rs := clustertest.StartRedis(t)
	dir := newRedisDir(t, rs)
	o := newNode(t, dir, "o", RoleOrigin, 0)
	e := newNode(t, dir, "e", RoleEdge, 10)
	o.Start()
	e.Start()
	ctx := context.Background()
	o.publish(t, "r/before")
	waitFor(t, 2*time.Second, "registered", func() bool {
		_, ok := e.Locate(ctx, "r/before")
		return ok && len(list(t, dir)) == 2
	})

	// The API has listed both nodes once: that list stands in while Redis is down.
	waitFor(t, 2*time.Second, "both nodes listed", func() bool { return len(e.Nodes(ctx)) == 2 })

	rs.Kill()
	start := time.Now()
	if _, ok := e.Locate(ctx, "r/before"); ok {
		t.Fatal("located with Redis down")
	}
	if _, err := e.Parents(ctx, "r/before"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Parents with Redis down: %v, want ErrUnavailable (not \"no node has it\", which is cached)", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("two directory calls with Redis down took %v", d)
	}
	start = time.Now()
	o.publish(t, "r/during") // the hub never waits for the directory
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("publishing took %v with Redis down", d)
	}
	if n := e.Nodes(ctx); len(n) != 2 { // the list it had before
		t.Fatalf("Nodes with Redis down should fall back to the last list: %v", ids(n))
	}
	time.Sleep(3 * testBeat)

	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitFor(t, 3*time.Second, "directory whole again", func() bool {
		_, ok1 := e.Locate(ctx, "r/before")
		_, ok2 := e.Locate(ctx, "r/during")
		return ok1 && ok2 && equal(list(t, dir), []string{"e", "o"})
	})
	t.Logf("directory whole %v after Redis came back (heartbeat %v)", time.Since(back).Round(time.Millisecond), testBeat)
}

func TestMemberParams(t *testing.T) {
	hub := relay.NewHub(relay.Params{Logger: testLog()})
	defer hub.Close()
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, err := NewMember(MemberParams{Directory: NewMemory(), Hub: hub, URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	m, err := NewMember(MemberParams{Directory: NewMemory(), Hub: hub, URL: "http://10.0.0.1:8080/"})
	if err != nil {
		t.Fatal(err)
	}
	m.Close() // never started: nothing to stop
	if s := m.Self(); s.URL != "http://10.0.0.1:8080" || s.Role != RoleOrigin || s.ID == "" {
		t.Fatalf("defaults: %+v", s)
	}
	if u := DefaultURL("127.0.0.1:8080"); u != "http://127.0.0.1:8080" {
		t.Fatal(u)
	}
	if _, err := NewRedis("http://nope", RedisOptions{}); err == nil {
		t.Fatal("bad Redis URL accepted")
	}
}
