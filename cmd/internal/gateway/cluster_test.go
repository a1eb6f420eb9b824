package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/cluster/clustertest"
)

// clusterNode starts a gateway in the Redis directory at url.
func clusterNode(t *testing.T, url string, role cluster.Role, maxViewers int) *testGateway {
	return startGateway(t, func(c *Config) {
		c.ClusterRedis = url
		c.ClusterRole = string(role)
		c.ClusterKey = clusterKey
		c.WHEPParams.MaxSessions = maxViewers
		c.TreeParams.Linger = 5 * time.Second
		c.Grace = 5 * time.Second
	})
}

// The Redis directory end to end: an edge with --cluster-redis and no
// parents pulls a stream from the origin registered in Redis; a full edge
// redirects a new viewer (307) to an edge with room, where it is served;
// GET /api/v1/cluster lists the nodes and their load.
func TestClusterRedis(t *testing.T) {
	rs := clustertest.StartRedis(t)
	origin := clusterNode(t, rs.URL(), cluster.RoleOrigin, 0)
	full := clusterNode(t, rs.URL(), cluster.RoleEdge, 1)
	spare := clusterNode(t, rs.URL(), cluster.RoleEdge, 0)
	origin.playing(t, "cl/cam")
	waitFor(t, 5*time.Second, "the origin registers the stream", func() bool {
		_, ok := full.Member().Locate(context.Background(), "cl/cam")
		return ok
	})

	v1 := full.view(t, "cl/cam")
	v1.waitFrames(t, 5*time.Second, 31, "frames on the edge")
	if l := full.Puller().Links(); len(l) != 1 || l[0].Parent != origin.base {
		t.Fatalf("edge links %+v, want one from the origin %s", l, origin.base)
	}

	// The full edge's next heartbeat knows the spare edge's room.
	waitFor(t, 6*time.Second, "the full edge would redirect", func() bool {
		for _, n := range full.Member().Nodes(context.Background()) {
			if n.URL == spare.base {
				return true
			}
		}
		return false
	})
	time.Sleep(2500 * time.Millisecond) // one heartbeat (2 s) refreshes the list Redirect uses
	v2 := full.view(t, "cl/cam")
	if v2.Resource == "" || v2.Resource[:len(spare.base)] != spare.base {
		t.Fatalf("second viewer's session %q is not on the spare edge %s", v2.Resource, spare.base)
	}
	v2.waitFrames(t, 5*time.Second, 31, "frames on the spare edge")

	var body struct {
		Directory string         `json:"directory"`
		Nodes     []cluster.Node `json:"nodes"`
	}
	if code := getJSON(t, origin.base+"/api/v1/cluster", &body); code != http.StatusOK {
		t.Fatalf("GET /api/v1/cluster: %d", code)
	}
	if body.Directory != "redis" || len(body.Nodes) != 3 {
		t.Fatalf("cluster: %+v", body)
	}
	for _, n := range body.Nodes {
		t.Logf("node %s %s %s load %+v", n.ID, n.Role, n.URL, n.Load)
	}
}
