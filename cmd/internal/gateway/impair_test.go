package gateway

// A user-space stand-in for `tc qdisc ... netem` on a publisher's link:
// impairedConn wraps the publisher's UDP socket and drops, delays
// (reordering like netem's jitter does) or black-holes its datagrams. See
// fault_test.go for why it is used instead of netem and how to run the
// same scenarios with netem.

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
)

// impairLimit bounds the delay queue like netem's default "limit 1000":
// datagrams beyond it are dropped (and counted).
const impairLimit = 1000

var errLinkCut = errors.New("impaired link: cut")

// impairment is what the link does to datagrams; the zero value is a clean
// link.
type impairment struct {
	LossOut float64       // share of outgoing datagrams dropped, 0..1
	LossIn  float64       // share of incoming datagrams dropped, 0..1
	Jitter  time.Duration // outgoing datagrams wait a uniform random [0, Jitter)
}

func (i impairment) String() string {
	return fmt.Sprintf("loss out %g%%, loss in %g%%, jitter 0-%v", 100*i.LossOut, 100*i.LossIn, i.Jitter)
}

// impairedConn is a net.PacketConn on a loopback UDP socket that applies an
// impairment. Losses use a seeded generator; which datagram gets which
// number still depends on goroutine scheduling, so runs are statistically,
// not bit-for-bit, reproducible.
type impairedConn struct {
	conn *net.UDPConn

	mu   sync.Mutex
	rng  *rand.Rand
	imp  impairment
	cut  bool
	q    delayQueue
	next uint64 // insertion order, to keep equal due times FIFO

	wake      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	sent, droppedOut, droppedIn, overflow, delayed atomic.Uint64
}

func newImpairedConn(t *testing.T, seed uint64) *impairedConn {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	c := &impairedConn{
		conn:   conn,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.deliver()
	return c
}

// set replaces the impairment; cut black-holes both directions until
// restored with setCut(false).
func (c *impairedConn) set(imp impairment) {
	c.mu.Lock()
	c.imp = imp
	c.mu.Unlock()
}

func (c *impairedConn) setCut(cut bool) {
	c.mu.Lock()
	c.cut = cut
	c.mu.Unlock()
}

func (c *impairedConn) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

func (c *impairedConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	if c.cut || (c.imp.LossOut > 0 && c.rng.Float64() < c.imp.LossOut) {
		c.mu.Unlock()
		c.droppedOut.Add(1)
		return len(b), nil // a lossy link does not tell the sender
	}
	if c.imp.Jitter <= 0 && c.q.Len() == 0 {
		c.mu.Unlock()
		c.sent.Add(1)
		return c.conn.WriteTo(b, addr)
	}
	if c.q.Len() >= impairLimit {
		c.mu.Unlock()
		c.overflow.Add(1)
		return len(b), nil
	}
	var d time.Duration
	if c.imp.Jitter > 0 {
		d = time.Duration(c.rng.Int64N(int64(c.imp.Jitter)))
	}
	c.next++
	heap.Push(&c.q, &delayed{due: time.Now().Add(d), order: c.next, b: append([]byte(nil), b...), addr: addr})
	c.mu.Unlock()
	c.delayed.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(b), nil
}

// deliver sends delayed datagrams when they are due: each has its own
// delay, so a later datagram with a shorter one overtakes, as with netem's
// jitter.
func (c *impairedConn) deliver() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		var wait time.Duration = time.Hour
		var due *delayed
		if c.q.Len() > 0 {
			if w := time.Until(c.q[0].due); w <= 0 {
				due = heap.Pop(&c.q).(*delayed)
			} else {
				wait = w
			}
		}
		c.mu.Unlock()
		if due != nil {
			c.sent.Add(1)
			_, _ = c.conn.WriteTo(due.b, due.addr)
			continue
		}
		timer.Reset(wait)
		select {
		case <-c.closed:
			return
		case <-c.wake:
		case <-timer.C:
		}
	}
}

func (c *impairedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.conn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		c.mu.Lock()
		drop := c.cut || (c.imp.LossIn > 0 && c.rng.Float64() < c.imp.LossIn)
		c.mu.Unlock()
		if !drop {
			return n, addr, nil
		}
		c.droppedIn.Add(1)
	}
}

func (c *impairedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		c.wg.Wait()
		err = c.conn.Close()
	})
	return err
}

func (c *impairedConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *impairedConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *impairedConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *impairedConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// delayed is a datagram waiting in the delay queue.
type delayed struct {
	due   time.Time
	order uint64
	b     []byte
	addr  net.Addr
}

// delayQueue is a min-heap on due time.
type delayQueue []*delayed

func (q delayQueue) Len() int { return len(q) }
func (q delayQueue) Less(i, j int) bool {
	if q[i].due.Equal(q[j].due) {
		return q[i].order < q[j].order
	}
	return q[i].due.Before(q[j].due)
}
func (q delayQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *delayQueue) Push(x any)   { *q = append(*q, x.(*delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return x
}

// impairedLink is a publisher's network: its media socket (behind a pion
// UDP mux) and its HTTP client, which cannot reach the gateway either
// while the link is cut.
type impairedLink struct {
	*impairedConn
	api    *webrtc.API
	http   *http.Client
	nacked atomic.Uint64
}

// newImpairedLink builds a publisher API on an impaired socket: loopback
// only (rtcclient.Loopback on the socket's UDP mux), with pion's default
// interceptors (NACK
// responder and generator, RTCP reports, TWCC) so the publisher answers
// the gateway's NACKs from its send history. ICE notices a dead link after
// 2 s, about as fast as browsers do, so a client can react to a cut.
func newImpairedLink(t *testing.T, seed uint64) *impairedLink {
	t.Helper()
	c := newImpairedConn(t, seed)
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c})
	l := &impairedLink{impairedConn: c}
	api, err := rtcclient.Loopback{
		Configure: func(m *webrtc.MediaEngine, reg *interceptor.Registry) error {
			if err := m.RegisterDefaultCodecs(); err != nil {
				return err
			}
			if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
				return err
			}
			reg.Add(rtcclient.NACKCounter{N: &l.nacked}) // NACKs the gateway sends the publisher
			return nil
		},
		Settings: func(s *webrtc.SettingEngine) {
			s.SetICEUDPMux(mux)
			s.SetICETimeouts(2*time.Second, 30*time.Second, 500*time.Millisecond)
		},
	}.API()
	if err != nil {
		t.Fatal(err)
	}
	l.api = api
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if c.isCut() {
			return nil, errLinkCut
		}
		return dialer.DialContext(ctx, network, addr)
	}}
	l.http = &http.Client{Timeout: 5 * time.Second, Transport: tr}
	// Runs after the publisher's own cleanup (registered later).
	t.Cleanup(func() {
		_ = mux.Close() // closes c
		tr.CloseIdleConnections()
	})
	return l
}

func (l *impairedLink) opts() rtcclient.Options {
	return rtcclient.Options{API: l.api, HTTP: l.http}
}

// publish opens a WHIP session over the impaired link.
func (l *impairedLink) publish(ctx context.Context, g *testGateway, path string) (*rtcclient.Publisher, error) {
	return rtcclient.Publish(ctx, g.base+"/whip/"+path, l.opts(), rtcclient.H264ConstrainedBaseline, true)
}

// mustPublish publishes path over the link and waits until it is
// connected; the publisher is closed when the test ends.
func (l *impairedLink) mustPublish(t *testing.T, ctx context.Context, g *testGateway, path string) *rtcclient.Publisher {
	t.Helper()
	pub, err := l.publish(ctx, g, path)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	waitConnected(t, pub.PC)
	return pub
}

func (c *impairedConn) String() string {
	return fmt.Sprintf("%d datagrams sent, %d dropped outgoing, %d dropped incoming, %d delayed, %d over the queue limit",
		c.sent.Load(), c.droppedOut.Load(), c.droppedIn.Load(), c.delayed.Load(), c.overflow.Load())
}
