package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/tree"
)

// HTTPAddr is the bound HTTP address (useful with port 0).
func (g *Gateway) HTTPAddr() string { return g.ln.Addr().String() }

// UDPAddr is the bound WebRTC media address (nil with UDP off).
func (g *Gateway) UDPAddr() net.Addr { return g.engine.LocalAddr() }

// TCPAddr is the bound ICE-TCP address (nil with ICE-TCP off).
func (g *Gateway) TCPAddr() net.Addr { return g.engine.TCPAddr() }

// Puller is the relay-tree puller, nil without parents.
func (g *Gateway) Puller() *tree.Puller { return g.puller }

// Member is this node's cluster membership.
func (g *Gateway) Member() *cluster.Member { return g.member }

// Hub is the relay core, for tests and embedding.
func (g *Gateway) Hub() *relay.Hub { return g.hub }

// Run serves until ctx is cancelled, then shuts down: it stops accepting
// requests, ends every session cleanly (DTLS close, so peers notice at
// once) and releases the ports.
func (g *Gateway) Run(ctx context.Context) error {
	g.log.Info("livegate listening", "http", g.HTTPAddr())
	g.logMedia()
	errc := make(chan error, 1)
	go func() { errc <- g.srv.Serve(g.ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	g.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := g.srv.Shutdown(sctx); err != nil {
		_ = g.srv.Close()
	}
	if serveErr == nil {
		serveErr = <-errc
	}
	g.closeMedia()
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return serveErr
}

// closeMedia stops every part New started, latest first: a part stops
// before those it uses (publishers and viewers before the engine and the
// hub, recordings and composites while the hub's streams still exist,
// webhooks after the last event they are told). It is idempotent.
func (g *Gateway) closeMedia() { g.stack.run() }

// cleanup is a stack of closers. Pushing one right after its part starts
// keeps the stop order the reverse of the start order, on every error
// path of New and at the end of Run alike.
type cleanup struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanup) push(f func()) {
	c.mu.Lock()
	c.fns = append(c.fns, f)
	c.mu.Unlock()
}

// run calls the closers, latest first, and empties the stack.
func (c *cleanup) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
