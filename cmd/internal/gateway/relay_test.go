package gateway

import (
	"crypto/sha256"
	"sort"
	"sync"
	"testing"
	"time"
)

const clusterKey = "cluster-key-for-tests"

// edge starts a gateway that pulls from parents.
func edge(t *testing.T, linger time.Duration, parents ...*testGateway) *testGateway {
	return startGateway(t, func(c *Config) {
		for _, p := range parents {
			c.TreeParams.Parents = append(c.TreeParams.Parents, p.base)
		}
		c.ClusterKey = clusterKey
		c.TreeParams.Linger = linger
		c.Grace = 5 * time.Second
	})
}

func frameKey(nalus [][]byte) [32]byte {
	h := sha256.New()
	for _, n := range nalus {
		h.Write(n)
	}
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

// clipIndex maps the hash of each clip access unit to its position.
func clipIndex(c testClip) map[[32]byte]int {
	m := map[[32]byte]int{}
	for i, s := range c.video {
		m[frameKey(sentNALUs(s.Data))] = i
	}
	return m
}

// Origin, two edges and a second-level edge: a viewer at the bottom gets
// the publisher's frames intact and in order; the added latency per hop is
// measured; killing its parent makes the edge fail over while its viewer
// keeps the session.
func TestRelayTree(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.ClusterKey = clusterKey })
	e1 := edge(t, 30*time.Second, origin)
	e2 := edge(t, 30*time.Second, origin)
	leaf := edge(t, 30*time.Second, e1, e2)
	c := loadClip(t)
	index := clipIndex(c)

	origin.playing(t, "tree/cam")
	time.Sleep(300 * time.Millisecond)

	vo := origin.view(t, "tree/cam")
	v1 := e1.view(t, "tree/cam")
	vl := leaf.view(t, "tree/cam")
	vl.waitFrames(t, 10*time.Second, 61, "frames at the leaf")

	// Intact and in order: consecutive frames are consecutive clip frames.
	frames, _, _ := vl.snapshot()
	prev := -1
	for i, f := range frames {
		if !f.complete {
			t.Fatalf("leaf frame %d incomplete", i)
		}
		n, ok := index[frameKey(f.nalus)]
		if !ok {
			t.Fatalf("leaf frame %d is not a frame of the clip", i)
		}
		if prev >= 0 && n != (prev+1)%len(c.video) {
			t.Fatalf("leaf frame %d is clip frame %d after %d", i, n, prev)
		}
		prev = n
	}

	// Added latency per hop: the same frame's arrival at each level.
	arrival := func(v *viewer) map[[32]byte]time.Time {
		f, _, _ := v.snapshot()
		m := map[[32]byte]time.Time{}
		for _, fr := range f {
			m[frameKey(fr.nalus)] = fr.at // the latest loop wins: compare like with like
		}
		return m
	}
	time.Sleep(time.Second)
	ao, a1, al := arrival(vo), arrival(v1), arrival(vl)
	var hop1, hop2 []time.Duration
	for k, to := range ao {
		if t1, ok := a1[k]; ok && t1.Sub(to).Abs() < time.Second {
			hop1 = append(hop1, t1.Sub(to))
			if tl, ok := al[k]; ok && tl.Sub(t1).Abs() < time.Second {
				hop2 = append(hop2, tl.Sub(t1))
			}
		}
	}
	p50 := func(d []time.Duration) time.Duration {
		if len(d) == 0 {
			return -1
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	t.Logf("added latency per hop (median): origin->edge %v (%d frames), edge->leaf %v (%d frames)",
		p50(hop1), len(hop1), p50(hop2), len(hop2))
	if len(hop2) < 20 || p50(hop1) > 50*time.Millisecond || p50(hop2) > 50*time.Millisecond {
		t.Fatalf("per-hop latency too high or too few frames compared")
	}

	// The API says where each stream comes from.
	_, body := request(t, "GET", leaf.base+"/api/v1/streams/tree/cam", "", "")
	if body["origin"] != "relay" || body["parent"] == "" {
		t.Fatalf("leaf's stream: origin %v parent %v, want relay from a parent", body["origin"], body["parent"])
	}
	_, body = request(t, "GET", origin.base+"/api/v1/streams/tree/cam", "", "")
	if body["origin"] != "local" {
		t.Fatalf("origin's stream: origin %v, want local", body["origin"])
	}

	// Kill the leaf's parent: the leaf re-pulls from the other edge and its
	// viewer keeps receiving.
	parent := leaf.Puller().Links()[0].Parent
	var killed *testGateway
	for _, e := range []*testGateway{e1, e2} {
		if e.base == parent {
			killed = e
		}
	}
	before, _, _ := vl.snapshot()
	killedAt := time.Now()
	killed.stop()
	vl.waitFrames(t, 5*time.Second, len(before)+30+1, "frames after failover")
	after, _, _ := vl.snapshot()
	var gap time.Duration
	last := before[len(before)-1].at
	for _, f := range after[len(before):] {
		if f.at.Sub(last) > gap {
			gap = f.at.Sub(last)
		}
		last = f.at
	}
	t.Logf("failover: largest gap at the leaf's viewer %v (parent killed at +0, links now %v)", gap, leaf.Puller().Links())
	if gap > 2*time.Second {
		t.Fatalf("gap of %v at the leaf's viewer during failover", gap)
	}
	if l := leaf.Puller().Links(); len(l) != 1 || l[0].Parent == parent {
		t.Fatalf("leaf links after failover: %v", l)
	}
	_ = killedAt
}

// An edge releases its pull after the last viewer has lingered out, and
// the origin sees its reader leave.
func TestRelayLingerAndNotFound(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.ClusterKey = clusterKey })
	e := edge(t, 700*time.Millisecond, origin)
	origin.playing(t, "tree/linger")

	v := e.view(t, "tree/linger")
	v.waitFrames(t, 5*time.Second, 11, "frames at the edge")
	st, _ := origin.Hub().Get("tree/linger")
	if st.Viewers() != 1 {
		t.Fatalf("origin viewers %d, want the edge's link", st.Viewers())
	}
	v.close()
	waitFor(t, 5*time.Second, "origin's reader to leave after the linger", func() bool { return st.Viewers() == 0 })

	// A stream that exists nowhere: 404 fast, and one pull for a burst.
	dials := e.Puller().Dials()
	var wg sync.WaitGroup
	start := time.Now()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.tryView(t, "tree/nothing"); statusOf(err) != 404 {
				t.Errorf("missing stream: %v, want 404", err)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("20 requests for a missing stream took %v", d)
	}
	if n := e.Puller().Dials() - dials; n > 2 {
		t.Fatalf("%d pulls toward the parent for one missing stream", n)
	}
}
