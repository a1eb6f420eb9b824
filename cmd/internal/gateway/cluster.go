package gateway

import "github.com/livegate/livegate/relay/cluster"

// joinCluster registers this node in the directory: it heartbeats from
// now on and leaves when the media parts close.
func (g *Gateway) joinCluster() error {
	cfg := g.cfg
	url := cfg.PublicURL
	if url == "" {
		url = cluster.DefaultURL(g.ln.Addr().String())
	}
	role := cluster.Role(cfg.ClusterRole)
	if role == "" {
		role = cluster.RoleOrigin
		if len(cfg.TreeParams.Parents) > 0 {
			role = cluster.RoleEdge
		}
	}
	relayed := func(string) bool { return false }
	if g.puller != nil {
		relayed = g.puller.Relaying
	}
	var err error
	g.member, err = cluster.NewMember(cluster.MemberParams{Directory: g.dir, Hub: g.hub, URL: url, ID: cfg.NodeID, Role: role,
		Load:    cluster.HubLoad(g.hub, g.whep.Sessions, cfg.WHEPParams.MaxSessions),
		Viewers: func() int64 { return int64(g.whep.Sessions()) }, MaxViewers: cfg.WHEPParams.MaxSessions,
		Relayed: relayed, Logger: g.log})
	if err != nil {
		return err
	}
	g.stack.push(g.member.Close)
	g.member.Start()
	return nil
}

func (g *Gateway) relayParent(path string) (string, bool) {
	if g.puller == nil {
		return "", false
	}
	for _, l := range g.puller.Links() {
		if l.Path == path {
			return l.Parent, true
		}
	}
	return "", false
}
