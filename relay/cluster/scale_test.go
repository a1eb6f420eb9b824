package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/relay/cluster/clustertest"
)

// commandCalls sums the calls of every command since Redis started
// (INFO commandstats).
func commandCalls(t *testing.T, r *Redis) int64 {
	t.Helper()
	info, err := r.c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		_, rest, ok := strings.Cut(line, ":calls=")
		if !ok || strings.HasPrefix(line, "cmdstat_info") {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		total += n
	}
	return total
}

// A directory of a few hundred nodes in Redis: a heartbeat costs the same
// few commands whatever the size of the cluster (no node list is read),
// the least loaded edges with room come from the head of a sorted set, and
// nodes that die at the head of it are skipped.
func TestRedisDirectoryAtScale(t *testing.T) {
	rs := clustertest.StartRedis(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	perBeat := map[int]float64{}
	for _, size := range []int{30, 300} {
		dir := newRedisDir(t, rs)
		dir.prefix = fmt.Sprintf("scale%d:", size)
		nodes := make([]Node, size)
		for i := range nodes {
			role, max := RoleEdge, 1000
			if i%10 == 0 {
				role, max = RoleOrigin, 0
			}
			nodes[i] = Node{ID: fmt.Sprintf("n%03d", i), URL: fmt.Sprintf("http://10.0.%d.%d:8080", i/250, i%250), Role: role,
				Load: Load{Viewers: int64(rng.IntN(1100)), MaxViewers: max}} // some edges are full
		}
		beat := func(n Node) {
			var streams []string
			if n.Role == RoleOrigin {
				streams = []string{"room/" + n.ID}
			}
			if err := dir.Heartbeat(ctx, n, streams, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range nodes {
			beat(n)
		}
		before := commandCalls(t, dir)
		start := time.Now()
		for _, n := range nodes { // a second round: the steady state
			beat(n)
		}
		took := time.Since(start)
		calls := commandCalls(t, dir) - before // INFO is left out of the sum
		perBeat[size] = float64(calls) / float64(size)

		// The answer is the brute-force one.
		want := byRoom(func() []Node {
			var out []Node
			for _, n := range nodes {
				if _, ok := room(n); ok {
					out = append(out, n)
				}
			}
			return out
		}())
		start = time.Now()
		got, err := dir.Candidates(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		cand := time.Since(start)
		if len(got) != 5 {
			t.Fatalf("%d nodes: %d candidates", size, len(got))
		}
		for i := range got {
			if got[i].ID != want[i].ID {
				t.Fatalf("%d nodes: candidate %d is %s (%d/%d viewers), want %s (%d/%d)", size, i,
					got[i].ID, got[i].Load.Viewers, got[i].Load.MaxViewers, want[i].ID, want[i].Load.Viewers, want[i].Load.MaxViewers)
			}
		}
		t.Logf("%d nodes: %.1f Redis commands per heartbeat, %v per heartbeat (one round trip), least loaded 5 edges in %v",
			size, perBeat[size], (took / time.Duration(size)).Round(time.Microsecond), cand.Round(time.Microsecond))

		// The three least loaded die (their entries expire): they are
		// skipped and pruned, the next ones answer.
		for _, n := range want[:3] {
			if err := dir.c.Del(ctx, dir.nodeKey(n.ID)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		got, err = dir.Candidates(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != want[3].ID || got[1].ID != want[4].ID {
			t.Fatalf("%d nodes: after the three least loaded died, candidates %v, want %s, %s", size, ids(got), want[3].ID, want[4].ID)
		}
		all, err := dir.Nodes(ctx)
		if err != nil || len(all) != size-3 {
			t.Fatalf("%d nodes: listed %d (%v), want %d", size, len(all), err, size-3)
		}
	}
	if perBeat[300] > perBeat[30]+0.5 {
		t.Fatalf("commands per heartbeat grow with the cluster: %.1f at 30 nodes, %.1f at 300", perBeat[30], perBeat[300])
	}
}
