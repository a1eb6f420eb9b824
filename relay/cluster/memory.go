package cluster

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is a Directory in this process: the single-node default, and a
// directory several in-process nodes (tests) can share.
type Memory struct {
	mu      sync.Mutex
	nodes   map[string]memNode
	streams map[string]memStream
	closed  bool
	now     func() time.Time
}

type memNode struct {
	n       Node
	expires time.Time
}

type memStream struct {
	id      string
	expires time.Time
}

// NewMemory returns an empty in-memory directory.
func NewMemory() *Memory {
	return &Memory{nodes: map[string]memNode{}, streams: map[string]memStream{}, now: time.Now}
}

// Kind implements Directory.
func (m *Memory) Kind() string { return "memory" }

// sweepLocked drops expired entries. Caller holds m.mu.
func (m *Memory) sweepLocked(now time.Time) {
	for id, e := range m.nodes {
		if !now.Before(e.expires) {
			delete(m.nodes, id)
		}
	}
	for p, e := range m.streams {
		if !now.Before(e.expires) {
			delete(m.streams, p)
		}
	}
}

func (m *Memory) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.sweepLocked(m.now())
	return nil
}

// Heartbeat implements Directory.
func (m *Memory) Heartbeat(ctx context.Context, n Node, streams []string, ttl time.Duration) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	exp := m.now().Add(ttl)
	n.Updated = m.now()
	m.nodes[n.ID] = memNode{n: n, expires: exp}
	for _, p := range streams {
		// As Redis does: a stream another node took over is not claimed back.
		if cur, ok := m.streams[p]; !ok || cur.id == n.ID {
			m.streams[p] = memStream{id: n.ID, expires: exp}
		}
	}
	return nil
}

// AddStream implements Directory.
func (m *Memory) AddStream(ctx context.Context, id, path string, ttl time.Duration) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.streams[path] = memStream{id: id, expires: m.now().Add(ttl)}
	return nil
}

// RemoveStream implements Directory.
func (m *Memory) RemoveStream(ctx context.Context, id, path string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if m.streams[path].id == id {
		delete(m.streams, path)
	}
	return nil
}

// Leave implements Directory.
func (m *Memory) Leave(ctx context.Context, id string, streams []string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	delete(m.nodes, id)
	for _, p := range streams {
		if m.streams[p].id == id {
			delete(m.streams, p)
		}
	}
	return nil
}

// Nodes implements Directory.
func (m *Memory) Nodes(ctx context.Context) ([]Node, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]Node, 0, len(m.nodes))
	for _, e := range m.nodes {
		out = append(out, e.n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Candidates implements Directory.
func (m *Memory) Candidates(ctx context.Context, k int) ([]Node, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []Node
	for _, e := range m.nodes {
		if _, ok := room(e.n); ok {
			out = append(out, e.n)
		}
	}
	out = byRoom(out)
	if len(out) > k {
		out = out[:max(k, 0)]
	}
	return out, nil
}

// Locate implements Directory.
func (m *Memory) Locate(ctx context.Context, path string) (Node, bool, error) {
	if err := m.lock(ctx); err != nil {
		return Node{}, false, err
	}
	defer m.mu.Unlock()
	s, ok := m.streams[path]
	if !ok {
		return Node{}, false, nil
	}
	n, ok := m.nodes[s.id]
	return n.n, ok, nil
}

// Close implements Directory.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
