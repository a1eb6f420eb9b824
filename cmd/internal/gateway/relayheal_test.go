package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/cluster/clustertest"
)

// kill makes the gateway vanish as a kill -9 would: its UDP socket and
// HTTP listener close at once, so no DTLS close, RTCP BYE or DELETE reaches
// anyone and its directory entry stays until it expires. What remains of
// it in this process is torn down by the usual stop, which can no longer
// reach anybody.
func (g *testGateway) kill() {
	if g.dir != nil && g.dir.Kind() == "redis" {
		_ = g.dir.Close() // no Leave: the entry expires as a dead node's would
	}
	_ = g.engine.Close()
	_ = g.srv.Close()
	g.stop()
}

// gapReport is what one viewer saw around a fault.
type gapReport struct {
	name     string
	gap      time.Duration // longest time between two frames after from
	gapAt    time.Time     // when that gap ended
	frames   int           // frames after from
	ssrcs    int           // distinct video SSRCs in the whole session
	seqJumps int           // sequence steps other than +1
	worstJmp int           // largest sequence step (absolute)
	tsBack   int           // timestamps going back by more than a frame
	detail   []string      // the steps, for the log
}

func (r gapReport) String() string {
	return fmt.Sprintf("%s: longest gap %v, %d frames, %d SSRC(s), %d sequence steps other than +1 (largest %d), %d timestamp steps back",
		r.name, r.gap.Round(time.Millisecond), r.frames, r.ssrcs, r.seqJumps, r.worstJmp, r.tsBack)
}

func measureGap(name string, v *viewer, from time.Time) gapReport {
	frames, _, pkts := v.snapshot()
	r := gapReport{name: name}
	last := from
	for _, f := range frames {
		if f.at.Before(from) {
			continue
		}
		r.frames++
		if d := f.at.Sub(last); d > r.gap {
			r.gap, r.gapAt = d, f.at
		}
		last = f.at
	}
	if d := time.Since(last); d > r.gap { // a viewer that never recovered
		r.gap, r.gapAt = d, time.Now()
	}
	seen := map[uint32]bool{}
	var prev rtp.Header
	for i, p := range pkts {
		seen[p.SSRC] = true
		if i == 0 {
			prev = p
			continue
		}
		if d := int16(p.SequenceNumber - prev.SequenceNumber); d != 1 {
			r.seqJumps++
			r.worstJmp = max(r.worstJmp, int(max(d, -d)))
			r.detail = append(r.detail, fmt.Sprintf("packet %d/%d: seq %d->%d ts %d->%d", i, len(pkts),
				prev.SequenceNumber, p.SequenceNumber, prev.Timestamp, p.Timestamp))
		}
		// Retransmissions (NACK) come back with their old timestamps: only
		// a step back beyond a few frames would be a discontinuity.
		if d := int32(p.Timestamp - prev.Timestamp); d < -90000/2 {
			r.tsBack++
		}
		prev = p
	}
	r.ssrcs = len(seen)
	return r
}

// namedViewer is a viewer with a name for the logs.
type namedViewer struct {
	name string
	*viewer
}

// viewersOn opens two viewers of path on each node, named
// "<prefix><node>/viewer<n>" (from 1).
func viewersOn(t *testing.T, nodes []*testGateway, prefix, path string) []namedViewer {
	t.Helper()
	var out []namedViewer
	for i, g := range nodes {
		for j := range 2 {
			out = append(out, namedViewer{fmt.Sprintf("%s%d/viewer%d", prefix, i+1, j+1), g.view(t, path)})
		}
	}
	return out
}

// checkGaps fails for every viewer whose gap after an event (what) was a
// second or more, logging each, then checks their continuity.
func checkGaps(t *testing.T, what string, reps []gapReport) {
	t.Helper()
	for _, r := range reps {
		t.Logf("%s: %s", what, r)
		if r.gap >= time.Second {
			t.Errorf("%s: gap of %v, want < 1 s", r.name, r.gap)
		}
	}
	checkContinuity(t, reps)
}

// checkContinuity fails unless every viewer kept one SSRC and numbering
// without a jump (small steps are packets lost on a loaded machine or
// retransmitted late; a new numbering would jump by thousands).
func checkContinuity(t *testing.T, reps []gapReport) {
	t.Helper()
	for _, r := range reps {
		if r.ssrcs != 1 || r.worstJmp > 64 || r.tsBack > 0 {
			t.Errorf("%s: continuity broken: %v", r, r.detail)
		}
	}
}

// TestRelayTreeKillParent: origin, two regional edges, three leaves with
// two viewers each. A regional edge is killed (no clean close) while it
// feeds two of the leaves: they must notice within the dead time and move
// to the other regional edge, their viewers seeing one gap under a second
// and one SSRC with continuous numbering. Then the origin's publisher
// connection drops and the host publishes again: every viewer continues.
func TestRelayTreeKillParent(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.ClusterKey = clusterKey })
	r1 := edge(t, 30*time.Second, origin)
	r2 := edge(t, 30*time.Second, origin)
	leaves := []*testGateway{edge(t, 30*time.Second, r1, r2), edge(t, 30*time.Second, r1, r2), edge(t, 30*time.Second, r2, r1)}

	pub := origin.playing(t, "heal/cam")
	origin.waitStreamLive(t, 5*time.Second, "heal/cam")

	viewers := viewersOn(t, leaves, "leaf", "heal/cam")
	for _, v := range viewers {
		v.waitFrames(t, 10*time.Second, 61, "frames at "+v.name)
	}
	for i, l := range leaves {
		t.Logf("leaf%d pulls from %v", i+1, l.Puller().Links())
	}

	// kill -9 of the regional edge feeding leaves 1 and 2.
	time.Sleep(500 * time.Millisecond)
	killedAt := time.Now()
	r1.kill()
	t.Logf("regional edge %s killed at %s (kill took %v)", r1.base, killedAt.Format("15:04:05.000"), time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(2500 * time.Millisecond)
	var reps []gapReport
	for _, v := range viewers {
		reps = append(reps, measureGap(v.name, v.viewer, killedAt.Add(-200*time.Millisecond)))
	}
	worst := time.Duration(0)
	for _, r := range reps {
		t.Logf("regional edge killed: %s", r)
		worst = max(worst, r.gap)
	}
	t.Logf("regional edge killed: longest video gap at any of %d viewers %v", len(reps), worst.Round(time.Millisecond))
	for i, l := range leaves {
		links := l.Puller().Links()
		if len(links) != 1 || links[0].Parent != r2.base {
			t.Errorf("leaf%d links after the kill: %v, want one from %s", i+1, links, r2.base)
		}
	}
	if worst >= time.Second {
		t.Errorf("longest gap %v after a parent was killed, want < 1 s", worst)
	}
	checkContinuity(t, reps)

	// The killed edge comes back at the same address: nobody moves back.
	addr := strings.TrimPrefix(r1.base, "http://")
	if ln, err := net.Listen("tcp", addr); err == nil {
		_ = ln.Close()
		back := startGateway(t, func(c *Config) {
			c.HTTP, c.TreeParams.Parents, c.ClusterKey, c.TreeParams.Linger, c.Grace = addr, []string{origin.base}, clusterKey, 30*time.Second, 5*time.Second
		})
		dials := make([]int64, len(leaves))
		for i, l := range leaves {
			dials[i] = l.Puller().Dials()
		}
		since := time.Now()
		time.Sleep(2 * time.Second)
		for i, l := range leaves {
			if links := l.Puller().Links(); len(links) != 1 || links[0].Parent != r2.base || l.Puller().Dials() != dials[i] {
				t.Errorf("leaf%d after its old parent came back: links %v, %d new dials", i+1, links, l.Puller().Dials()-dials[i])
			}
		}
		for _, v := range viewers {
			if r := measureGap(v.name, v.viewer, since); r.gap > 300*time.Millisecond {
				t.Errorf("after the old parent came back: %s", r)
			}
		}
		t.Logf("the killed edge is back at %s: the leaves stay where they are", back.base)
	} else {
		t.Logf("the killed edge's address is taken meanwhile (%v): not checking its return", err)
	}

	// The publisher's connection drops (no DELETE) and it publishes again.
	pub.drop()
	dropped := time.Now()
	time.Sleep(300 * time.Millisecond)
	pub2 := origin.playing(t, "heal/cam")
	republished := time.Now()
	time.Sleep(2500 * time.Millisecond)
	worst = 0
	reps = reps[:0]
	for _, v := range viewers {
		r := measureGap(v.name, v.viewer, republished)
		// The gap that counts starts at the republish: the publisher's own
		// absence is not the tree's doing.
		reps = append(reps, r)
		t.Logf("publisher republished: %s", r)
		worst = max(worst, r.gap)
	}
	t.Logf("publisher dropped at +0, republished at +%v: longest wait for video after the republish %v",
		republished.Sub(dropped).Round(time.Millisecond), worst.Round(time.Millisecond))
	if worst >= time.Second {
		t.Errorf("viewers waited %v for video after the republish, want < 1 s", worst)
	}
	checkContinuity(t, reps)
	pub2.stop()
}

// describeLinks is a one-line view of a node's pulls, for logs.
func describeLinks(g *testGateway) string {
	var b strings.Builder
	for _, l := range g.Puller().Links() {
		fmt.Fprintf(&b, "%s<-%s ", l.Path, l.Parent)
	}
	return b.String()
}

// originMove runs two origins and two edges in one Redis directory, with
// two viewers per edge; the publisher starts on the first origin, which is
// then lost (lose), and publishes again on the second. The edges must find
// the stream's new place in the directory and re-pull it while their
// viewers keep their sessions.
func originMove(t *testing.T, path string, originViewer bool, lose func(o1 *testGateway, pub *player)) {
	rs := clustertest.StartRedis(t)
	o1 := clusterNode(t, rs.URL(), cluster.RoleOrigin, 0)
	o2 := clusterNode(t, rs.URL(), cluster.RoleOrigin, 0)
	edges := []*testGateway{clusterNode(t, rs.URL(), cluster.RoleEdge, 0), clusterNode(t, rs.URL(), cluster.RoleEdge, 0)}

	first := o1.playing(t, path)
	waitFor(t, 5*time.Second, "the stream registered on the first origin", func() bool {
		u, ok := edges[0].Member().Locate(context.Background(), path)
		return ok && u == o1.base
	})
	viewers := viewersOn(t, edges, "edge", path)
	if originViewer {
		// A viewer on the first origin itself: when the publisher moves
		// away, that origin pulls the stream from the new one for it.
		viewers = append(viewers, namedViewer{"origin1/viewer", o1.view(t, path)})
	}
	for _, v := range viewers {
		v.waitFrames(t, 10*time.Second, 31, "frames at "+v.name)
	}

	lostAt := time.Now()
	lose(o1, first)
	time.Sleep(300 * time.Millisecond) // the host notices and reconnects elsewhere
	o2.playing(t, path)
	republished := time.Now()
	time.Sleep(3 * time.Second)

	var reps []gapReport
	worst := time.Duration(0)
	for _, v := range viewers {
		r := measureGap(v.name, v.viewer, republished)
		reps = append(reps, r)
		worst = max(worst, r.gap)
		t.Logf("%s", r)
	}
	t.Logf("origin lost at +0, stream republished on the other origin at +%v: longest wait for video after the republish %v",
		republished.Sub(lostAt).Round(time.Millisecond), worst.Round(time.Millisecond))
	// An edge whose old origin is alive may stay on it once that origin
	// pulls the stream from the new one (a hop more, no gap more).
	o1Relays := false
	if originViewer { // the first origin is up in that case
		if l := o1.Puller().Links(); len(l) == 1 && l[0].Parent == o2.base {
			o1Relays = true
		}
	}
	for i, e := range edges {
		l := e.Puller().Links()
		if len(l) != 1 || (l[0].Parent != o2.base && !(o1Relays && l[0].Parent == o1.base)) {
			t.Errorf("edge%d links %v, want one from the second origin %s (or from the first, relaying it)", i+1, l, o2.base)
		}
		t.Logf("edge%d pulls from %v", i+1, l)
	}
	if originViewer && !o1Relays {
		t.Errorf("the first origin does not pull the stream from the second for its viewer: %v", o1.Puller().Links())
	}
	if worst >= 2*time.Second {
		t.Errorf("viewers waited %v for video after the republish, want < 2 s", worst)
	}
	checkContinuity(t, reps)
}

// TestRelayOriginKilled: the origin dies (kill -9: its directory entry
// stays until it expires) and the host publishes on another origin.
func TestRelayOriginKilled(t *testing.T) {
	originMove(t, "move/killed", false, func(o1 *testGateway, pub *player) {
		o1.kill()
		pub.drop()
	})
}

// TestRelayOriginMoved: the origin stays up but the host's connection
// drops and a load balancer sends it to another origin; the first origin
// keeps the stream in its grace period and must not claim it back in the
// directory; the edges, whose links to it are up but silent, move; and
// the first origin's own viewer continues through a pull from the new one.
func TestRelayOriginMoved(t *testing.T) {
	originMove(t, "move/lb", true, func(_ *testGateway, pub *player) {
		pub.drop() // PeerConnection closed, no DELETE
	})
}

// TestRelayChainKillMiddle: four levels, origin -> two edges -> B -> C,
// with viewers on B and C. The edge feeding B is killed: B moves to the
// other edge, and C, whose own parent B stays up, waits for B instead of
// moving too; viewers at both levels see one gap under a second.
func TestRelayChainKillMiddle(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.ClusterKey = clusterKey })
	a1 := edge(t, 30*time.Second, origin)
	a2 := edge(t, 30*time.Second, origin)
	b := edge(t, 30*time.Second, a1, a2)
	c := edge(t, 30*time.Second, b)
	origin.playing(t, "chain/cam")
	origin.waitStreamLive(t, 5*time.Second, "chain/cam")
	vb, vc := b.view(t, "chain/cam"), c.view(t, "chain/cam")
	for _, v := range []*viewer{vb, vc} {
		v.waitFrames(t, 10*time.Second, 61, "frames")
	}
	if l := b.Puller().Links(); len(l) != 1 || l[0].Parent != a1.base {
		t.Fatalf("B pulls from %v, want %s", l, a1.base)
	}
	cDials := c.Puller().Dials()
	killedAt := time.Now()
	a1.kill()
	time.Sleep(2500 * time.Millisecond)
	checkGaps(t, "middle edge killed", []gapReport{measureGap("B's viewer", vb, killedAt), measureGap("C's viewer", vc, killedAt)})
	if l := b.Puller().Links(); len(l) != 1 || l[0].Parent != a2.base {
		t.Errorf("B pulls from %v after the kill, want %s", l, a2.base)
	}
	if n := c.Puller().Dials() - cDials; n != 0 {
		t.Errorf("C dialed %d times although its parent stayed up", n)
	}
}
