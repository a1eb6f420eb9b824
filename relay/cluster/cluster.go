// Package cluster is livegate's cluster directory: which nodes exist, how
// loaded they are, and on which node each stream originates.
//
// A Directory stores that state: Memory for a single node (the default) or
// Redis when the nodes share one (--cluster-redis). A Member is this node's
// presence in a directory: it heartbeats its load, registers the streams
// published here (and removes them when they end), and answers the
// questions the rest of the gateway asks: where does a stream originate
// (Parents, for relay/tree), which edge should take a viewer this node is
// too full for (Redirect), and what does the cluster look like (Nodes).
//
// Every entry expires (TTL) unless refreshed, so a dead node and its
// streams disappear by themselves; a directory that is down is logged and
// never blocks media: every call is bounded by a short timeout.
package cluster

import (
	"context"
	"errors"
	"sort"
	"time"
)

// Role is what a node is for.
type Role string

// Roles.
const (
	// RoleOrigin takes publishers; it is never sent redirected viewers.
	RoleOrigin Role = "origin"
	// RoleEdge serves viewers, pulling streams from origins (or parents).
	RoleEdge Role = "edge"
)

// Load is a node's current load.
type Load struct {
	Viewers    int64   `json:"viewers"`    // WHEP viewers, relay links to children included
	MaxViewers int     `json:"maxViewers"` // 0: no limit
	Streams    int     `json:"streams"`    // streams present on the node
	BitrateOut float64 `json:"bitrateOut"` // bits per second sent to viewers
	CPU        float64 `json:"cpuCores"`   // CPU cores used by the process
}

// Node is one gateway in the directory.
type Node struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"` // public base URL: http(s)://host:port
	Role    Role      `json:"role"`
	Load    Load      `json:"load"`
	Updated time.Time `json:"updatedAt"`
}

// ErrClosed is returned by a closed directory.
var ErrClosed = errors.New("cluster: directory closed")

// ErrUnavailable wraps a directory failure where an answer was needed (the
// HTTP layer answers 503).
var ErrUnavailable = errors.New("cluster directory unavailable")

// Directory stores nodes and stream locations with expiry. Implementations
// are safe for concurrent use and honour their contexts.
type Directory interface {
	// Heartbeat registers or refreshes n and the streams it originates;
	// all of them expire after ttl unless refreshed. A stream that another
	// node registered since (AddStream) is not taken back.
	Heartbeat(ctx context.Context, n Node, streams []string, ttl time.Duration) error
	// AddStream records that path originates on node id, for ttl, whichever
	// node had it before.
	AddStream(ctx context.Context, id, path string, ttl time.Duration) error
	// RemoveStream forgets path if it is still recorded for node id.
	RemoveStream(ctx context.Context, id, path string) error
	// Leave removes node id and its streams at once.
	Leave(ctx context.Context, id string, streams []string) error
	// Nodes lists the live nodes, by ID. It reads every node: it is for
	// the API, not for anything that runs per heartbeat or per request.
	Nodes(ctx context.Context) ([]Node, error)
	// Candidates returns up to k live edges that have room for a viewer,
	// least loaded first (ties by ID), without reading the whole list.
	Candidates(ctx context.Context, k int) ([]Node, error)
	// Locate returns the live node where path originates.
	Locate(ctx context.Context, path string) (Node, bool, error)
	// Kind names the implementation ("memory", "redis").
	Kind() string
	Close() error
}

// utilization orders nodes by load: the share of their viewer limit in
// use, or for nodes without a limit their viewers against a nominal
// 10,000.
func utilization(viewers int64, max int) float64 {
	if max <= 0 {
		return float64(viewers) / 10000
	}
	return float64(viewers) / float64(max)
}

// LeastLoaded picks, among the edges of nodes not in exclude that have
// room for one more viewer, the one with the lowest utilization (ties: by
// ID, so the choice is stable).
func LeastLoaded(nodes []Node, exclude ...string) (Node, bool) {
	return leastLoaded(nodes, nil, exclude)
}

// leastLoaded is LeastLoaded with extra viewers already sent to some nodes.
func leastLoaded(nodes []Node, extra map[string]int64, exclude []string) (Node, bool) {
	var best Node
	bestU, found := 0.0, false
	sorted := append([]Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
outer:
	for _, n := range sorted {
		if n.Role != RoleEdge || n.URL == "" {
			continue
		}
		for _, x := range exclude {
			if n.ID == x {
				continue outer
			}
		}
		v := n.Load.Viewers + extra[n.ID]
		if n.Load.MaxViewers > 0 && v >= int64(n.Load.MaxViewers) {
			continue
		}
		if u := utilization(v, n.Load.MaxViewers); !found || u < bestU {
			best, bestU, found = n, u, true
		}
	}
	return best, found
}

// room reports whether n is an edge that takes redirected viewers now,
// and its utilization.
func room(n Node) (float64, bool) {
	if n.Role != RoleEdge || n.URL == "" {
		return 0, false
	}
	if n.Load.MaxViewers > 0 && n.Load.Viewers >= int64(n.Load.MaxViewers) {
		return 0, false
	}
	return utilization(n.Load.Viewers, n.Load.MaxViewers), true
}

// byRoom orders nodes least loaded first, ties by ID.
func byRoom(nodes []Node) []Node {
	sort.SliceStable(nodes, func(i, j int) bool {
		ui := utilization(nodes[i].Load.Viewers, nodes[i].Load.MaxViewers)
		uj := utilization(nodes[j].Load.Viewers, nodes[j].Load.MaxViewers)
		if ui != uj {
			return ui < uj
		}
		return nodes[i].ID < nodes[j].ID
	})
	return nodes
}
