package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/relay"
)

// MemberParams configures a Member.
type MemberParams struct {
	Directory Directory
	// Hub's streams published here are registered as originating here.
	Hub *relay.Hub
	// URL is this node's public base URL (http://host:port), the one other
	// nodes and redirected viewers use. Required.
	URL string
	// ID names the node (default: host name and the URL's host:port).
	ID string
	// Role is origin (the default) or edge.
	Role Role
	// Load reports the node's load for heartbeats (default: zero load).
	Load func() Load
	// Viewers counts the viewers Redirect compares with MaxViewers
	// (default: Load().Viewers). It should be cheap: it runs for each WHEP
	// request.
	Viewers func() int64
	// MaxViewers is the viewer limit beyond which Redirect sends viewers
	// to other edges (0: never).
	MaxViewers int
	// Relayed reports streams pulled from another node (tree.Puller's
	// Relaying); they are not registered as originating here.
	Relayed func(path string) bool
	// Heartbeat is the refresh period (default 2 s); TTL the life of an
	// entry that is not refreshed (default three heartbeats).
	Heartbeat time.Duration
	TTL       time.Duration
	// Timeout bounds each directory call (default 1 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Member is this node's presence in the directory.
type Member struct {
	p   MemberParams
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
	done   chan struct{}
	unsub  func()
	start  sync.Once
	close  sync.Once

	mu         sync.Mutex
	registered map[string]bool      // streams this node advertises
	removing   map[string]time.Time // removals to retry, until their entry expires anyway
	claims     map[string]bool      // streams (re)published here since the last sync
	cache      []Node               // the least loaded edges with room at the last heartbeat
	cacheAt    time.Time
	sent       map[string]int64 // viewers redirected per node since cacheAt
	listed     []Node           // the last whole list, for when the directory is down

	errMu      sync.Mutex
	failing    bool
	lastLogged time.Time
	suppressed int
}

// NewMember prepares a member; Start begins heartbeats and registration
// and Close ends them. Locate and Parents work before Start.
func NewMember(p MemberParams) (*Member, error) {
	if p.Directory == nil || p.Hub == nil {
		return nil, errors.New("cluster: member needs a directory and a hub")
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cluster: public URL %q must be http(s)://host:port", p.URL)
	}
	p.URL = strings.TrimRight(p.URL, "/")
	if p.ID == "" {
		h, _ := os.Hostname()
		p.ID = h + "/" + u.Host
	}
	if p.Role == "" {
		p.Role = RoleOrigin
	}
	if p.Role != RoleOrigin && p.Role != RoleEdge {
		return nil, fmt.Errorf("cluster: role %q is not origin or edge", p.Role)
	}
	if p.Load == nil {
		p.Load = func() Load { return Load{} }
	}
	if p.Viewers == nil {
		load := p.Load
		p.Viewers = func() int64 { return load().Viewers }
	}
	if p.Relayed == nil {
		p.Relayed = func(string) bool { return false }
	}
	if p.Heartbeat <= 0 {
		p.Heartbeat = 2 * time.Second
	}
	if p.TTL <= p.Heartbeat {
		p.TTL = 3 * p.Heartbeat
	}
	if p.Timeout <= 0 {
		p.Timeout = time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Member{p: p, log: p.Logger.With("node", p.ID, "directory", p.Directory.Kind()),
		ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), done: make(chan struct{}),
		registered: map[string]bool{}, removing: map[string]time.Time{}, claims: map[string]bool{}, sent: map[string]int64{}}, nil
}

// Start registers the node and keeps it registered until Close.
func (m *Member) Start() {
	m.start.Do(func() {
		m.unsub = m.p.Hub.Subscribe(m.onEvent)
		go m.loop()
	})
}

// Close stops heartbeats and removes the node and its streams from the
// directory (bounded by the timeout). It does not close the directory.
func (m *Member) Close() {
	m.close.Do(func() {
		started := false
		m.start.Do(func() {}) // no Start after Close
		if m.unsub != nil {
			m.unsub()
			started = true
		}
		m.cancel()
		if !started {
			return
		}
		<-m.done
		m.mu.Lock()
		streams := keys(m.registered)
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), m.p.Timeout)
		defer cancel()
		m.report("leave", m.p.Directory.Leave(ctx, m.p.ID, streams))
	})
}

// onEvent runs under hub locks: it only notes the change and signals the
// loop, never blocks.
func (m *Member) onEvent(e relay.Event) {
	switch e.Type {
	case relay.StreamStarted, relay.StreamEnded, relay.PublisherBack:
		if e.Type != relay.StreamEnded {
			// A publisher here now: the stream is claimed even if the
			// directory names another node (the publisher moved back).
			m.mu.Lock()
			m.claims[e.Path] = true
			m.mu.Unlock()
		}
		select {
		case m.kick <- struct{}{}:
		default: // a sync is already due; it will see this change too
		}
	}
}

func (m *Member) loop() {
	defer close(m.done)
	t := time.NewTicker(m.p.Heartbeat)
	defer t.Stop()
	m.beat()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
			m.sync()
		case <-t.C:
			m.beat()
		}
	}
}

func (m *Member) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.ctx, m.p.Timeout)
}

// local computes the streams this node should advertise: live ones that
// are published here (not relayed), and advertised ones that still exist
// and are not pulled from elsewhere now (a stream in its grace period
// stays where it was; one whose publisher moved to another node and that
// this node now pulls from there does not).
func (m *Member) local() map[string]bool {
	out := map[string]bool{}
	m.mu.Lock()
	was := make(map[string]bool, len(m.registered))
	for k := range m.registered {
		was[k] = true
	}
	m.mu.Unlock()
	for _, st := range m.p.Hub.Streams() {
		path := st.Path()
		if was[path] && !m.p.Relayed(path) {
			out[path] = true
			continue
		}
		// Relayed is asked before and after Live, so a pull that starts
		// or ends meanwhile is never taken for a local publisher.
		if m.p.Relayed(path) || !st.Live() || m.p.Relayed(path) {
			continue
		}
		out[path] = true
	}
	return out
}

// sync writes stream additions and removals at once.
func (m *Member) sync() {
	want := m.local()
	m.mu.Lock()
	var add, del []string
	for p := range want {
		// A claim is a publisher here again; a stream that continues
		// through a pull (its publisher moved) is not one.
		if !m.registered[p] || (m.claims[p] && !m.p.Relayed(p)) {
			add = append(add, p)
		}
	}
	clear(m.claims)
	for p := range m.registered {
		if !want[p] {
			del = append(del, p)
		}
	}
	m.registered = want
	for _, p := range del {
		m.removing[p] = time.Now().Add(m.p.TTL)
	}
	for _, p := range add {
		delete(m.removing, p)
	}
	m.mu.Unlock()
	for _, p := range add {
		ctx, cancel := m.call()
		err := m.p.Directory.AddStream(ctx, m.p.ID, p, m.p.TTL)
		cancel()
		m.report("add stream", err)
		if err == nil {
			m.log.Debug("stream registered", "stream", p)
		}
	}
	m.retryRemovals()
}

func (m *Member) retryRemovals() {
	m.mu.Lock()
	var del []string
	now := time.Now()
	for p, until := range m.removing {
		if now.After(until) {
			delete(m.removing, p) // expired in the directory by now
		} else {
			del = append(del, p)
		}
	}
	m.mu.Unlock()
	for _, p := range del {
		ctx, cancel := m.call()
		err := m.p.Directory.RemoveStream(ctx, m.p.ID, p)
		cancel()
		m.report("remove stream", err)
		if err == nil {
			m.mu.Lock()
			delete(m.removing, p)
			m.mu.Unlock()
		}
	}
}

// candidates is how many of the least loaded edges a heartbeat learns:
// enough to spread a burst of redirects until the next one.
const candidates = 8

// beat refreshes the node, its load and its streams, and learns the least
// loaded edges with room: O(log n) in the directory, whatever the size of
// the cluster.
func (m *Member) beat() {
	m.sync()
	self := m.Self()
	m.mu.Lock()
	streams := keys(m.registered)
	m.mu.Unlock()
	ctx, cancel := m.call()
	err := m.p.Directory.Heartbeat(ctx, self, streams, m.p.TTL)
	cancel()
	m.report("heartbeat", err)
	if err != nil {
		return
	}
	ctx, cancel = m.call()
	nodes, err := m.p.Directory.Candidates(ctx, candidates+1) // this node may be among them
	cancel()
	m.report("least loaded edges", err)
	if err == nil {
		m.mu.Lock()
		m.cache, m.cacheAt, m.sent = nodes, time.Now(), map[string]int64{}
		m.mu.Unlock()
	}
}

// report logs directory failures at most every 10 s, and the recovery.
func (m *Member) report(op string, err error) {
	if err != nil && m.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // closing
	}
	m.errMu.Lock()
	defer m.errMu.Unlock()
	if err == nil {
		if m.failing {
			m.log.Info("cluster directory reachable again", "failed_calls", m.suppressed+1)
			m.failing, m.suppressed = false, 0
		}
		return
	}
	if m.failing && time.Since(m.lastLogged) < 10*time.Second {
		m.suppressed++
		return
	}
	m.log.Warn("cluster directory unavailable; media is unaffected, retrying", "op", op, "err", err,
		"failed_since_last_log", m.suppressed)
	m.failing, m.lastLogged, m.suppressed = true, time.Now(), 0
}

// Self describes this node with its current load.
func (m *Member) Self() Node {
	return Node{ID: m.p.ID, URL: m.p.URL, Role: m.p.Role, Load: m.p.Load(), Updated: time.Now().UTC()}
}

// DirectoryKind names the directory ("memory", "redis").
func (m *Member) DirectoryKind() string { return m.p.Directory.Kind() }

// Nodes lists the cluster's nodes; this node's entry is current. When the
// directory cannot answer it returns the last list it gave (or the edges
// the last heartbeat learned).
func (m *Member) Nodes(ctx context.Context) []Node {
	ctx, cancel := context.WithTimeout(ctx, m.p.Timeout)
	defer cancel()
	nodes, err := m.p.Directory.Nodes(ctx)
	m.report("list nodes", err)
	m.mu.Lock()
	switch {
	case err == nil:
		m.listed = nodes
	case m.listed != nil:
		nodes = append([]Node(nil), m.listed...)
	default:
		nodes = append([]Node(nil), m.cache...)
	}
	m.mu.Unlock()
	self, out := m.Self(), make([]Node, 0, len(nodes)+1)
	out = append(out, self)
	for _, n := range nodes {
		if n.ID != self.ID {
			out = append(out, n)
		}
	}
	return out
}

// Locate returns the base URL of the node where path originates.
func (m *Member) Locate(ctx context.Context, path string) (string, bool) {
	n, ok, err := m.locate(ctx, path)
	if err != nil || !ok {
		return "", false
	}
	return n.URL, true
}

func (m *Member) locate(ctx context.Context, path string) (Node, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, m.p.Timeout)
	defer cancel()
	n, ok, err := m.p.Directory.Locate(ctx, path)
	m.report("locate", err)
	return n, ok, err
}

// Parents is a relay/tree Locate function: the node where path originates,
// unless that is this node. A directory failure is an error (not "no node
// has it"), so it is not remembered as a missing stream.
func (m *Member) Parents(ctx context.Context, path string) ([]string, error) {
	n, ok, err := m.locate(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ok || n.ID == m.p.ID || n.URL == m.p.URL {
		return nil, nil
	}
	return []string{n.URL}, nil
}

// LeastLoaded asks the directory for the least loaded edge that has room,
// other than the nodes in exclude.
func (m *Member) LeastLoaded(ctx context.Context, exclude ...string) (Node, bool) {
	ctx, cancel := context.WithTimeout(ctx, m.p.Timeout)
	defer cancel()
	nodes, err := m.p.Directory.Candidates(ctx, len(exclude)+1)
	m.report("least loaded edges", err)
	if err != nil {
		m.mu.Lock()
		nodes = append([]Node(nil), m.cache...)
		m.mu.Unlock()
	}
	return LeastLoaded(nodes, exclude...)
}

// Redirect is for the WHEP handler: when this node has maxViewers viewers
// or more (maxViewers 0: MemberParams.MaxViewers) it returns the base URL of a
// less loaded edge with room, to answer 307 Temporary Redirect (RFC 9725).
// It uses the least loaded edges of the last heartbeat and counts the viewers it
// sent to each node until the next one, so a burst is spread instead of
// flooding one edge; it never waits for the directory.
func (m *Member) Redirect(ctx context.Context, maxViewers int) (string, bool) {
	if maxViewers <= 0 {
		maxViewers = m.p.MaxViewers
	}
	if maxViewers <= 0 || m.p.Viewers() < int64(maxViewers) || ctx.Err() != nil {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.cacheAt) > m.p.TTL {
		return "", false // the directory has not answered lately: no blind redirects
	}
	n, ok := leastLoaded(m.cache, m.sent, []string{m.p.ID})
	if !ok || n.URL == m.p.URL {
		return "", false
	}
	m.sent[n.ID]++
	return n.URL, true
}

// DefaultURL derives a public base URL from the HTTP listen address: the
// host name when it listens on all interfaces. Set the public URL
// explicitly behind NAT, a load balancer or TLS.
func DefaultURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _ = os.Hostname()
	}
	return "http://" + net.JoinHostPort(host, port)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
