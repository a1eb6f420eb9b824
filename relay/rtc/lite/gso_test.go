package lite

import (
	"bytes"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"
)

// gsoRig is a batches on a loopback socket and receivers that read what it
// sends.
type gsoRig struct {
	t    *testing.T
	conn *net.UDPConn
	b    *batches
}

func newGSORig(t *testing.T) *gsoRig {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r := &gsoRig{t: t, conn: conn, b: &batches{}}
	r.b.init(conn)
	return r
}

func (r *gsoRig) receiver() (*net.UDPConn, *net.UDPAddr) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	r.t.Cleanup(func() { _ = c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr)
}

// queue adds a datagram of size n whose bytes say which viewer and packet
// it is.
func (r *gsoRig) queue(bt *batch, to *net.UDPAddr, viewer, seq byte, n int) {
	s := r.b.slot(bt)[:n]
	for i := range s {
		s[i] = viewer ^ seq ^ byte(i)
	}
	s[0], s[1] = viewer, seq
	r.b.commit(bt, s, to)
}

func want(viewer, seq byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = viewer ^ seq ^ byte(i)
	}
	s[0], s[1] = viewer, seq
	return s
}

func readAll(t *testing.T, c *net.UDPConn, wants [][]byte) {
	t.Helper()
	buf := make([]byte, 2048)
	for i, w := range wants {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(wants), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes starting %v, want %d starting %v", i, n, buf[:2], len(w), w[:2])
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected extra datagram of %d bytes", n)
	}
}

// A keyframe-like run to each of two viewers (equal sizes, a shorter last
// one), a run longer than 64 packets, and runs that must not be merged
// (a larger packet after a smaller one) all arrive whole and in order,
// whether or not the kernel segments.
func TestRunsArriveWholeAndInOrder(t *testing.T) {
	r := newGSORig(t)
	t.Logf("UDP GSO: %v", r.b.gso.Load())
	a, aAddr := r.receiver()
	b, bAddr := r.receiver()
	bt := r.b.get(0)
	var wa, wb [][]byte
	// viewer a: 41 packets of 1,100 bytes and a 300-byte last.
	for i := range 41 {
		r.queue(bt, aAddr, 1, byte(i), 1100)
		wa = append(wa, want(1, byte(i), 1100))
	}
	r.queue(bt, aAddr, 1, 41, 300)
	wa = append(wa, want(1, 41, 300))
	// viewer b: 70 equal packets (more than one message may carry), then
	// small, large, small.
	for i := range 70 {
		r.queue(bt, bAddr, 2, byte(i), 1200)
		wb = append(wb, want(2, byte(i), 1200))
	}
	for i, n := range []int{200, 1300, 1300, 90} {
		r.queue(bt, bAddr, 2, byte(70+i), n)
		wb = append(wb, want(2, byte(70+i), n))
	}
	// a again after b: its own message, order kept.
	r.queue(bt, aAddr, 1, 42, 500)
	wa = append(wa, want(1, 42, 500))
	r.b.flush(bt) // the batch filled up once on the way: that part was sent already
	readAll(t, a, wa)
	readAll(t, b, wb)
	if got, want := r.b.sent.Load(), uint64(len(wa)+len(wb)); got != want {
		t.Errorf("sent %d datagrams, want %d", got, want)
	}
	if r.b.gso.Load() && r.b.gsoMsgs.Load() == 0 {
		t.Error("GSO is on but no message carried more than one datagram")
	}
	if e := r.b.errors.Load(); e != 0 {
		t.Errorf("%d send errors", e)
	}
}

// Every message merge makes is one the kernel accepts and means the same
// datagrams: one address, at most 64 segments and 65,507 bytes, all of the
// first one's size but a shorter last one, and together the batch in order.
func TestMergeLimits(t *testing.T) {
	r := &batches{}
	empty := []*batch{}
	r.list.Store(&empty)
	x := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	y := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
	rnd := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		bt := r.get(0)
		for bt.n < batchSize {
			to, n := x, 1000
			switch rnd.IntN(4) {
			case 0:
				to = y
			case 1:
				n = 40 + rnd.IntN(1400)
			}
			if round%3 == 0 {
				n = 1000 + rnd.IntN(2) // sizes barely differ
			}
			s := r.slot(bt)[:n]
			r.commit(bt, s, to)
		}
		m := bt.merge()
		next := 0
		for k, g := range bt.gmsgs[:m] {
			if bt.first[k] != next {
				t.Fatalf("message %d starts at datagram %d, want %d", k, bt.first[k], next)
			}
			size, total := len(g.Buffers[0]), 0
			for i, b := range g.Buffers {
				if &b[0] != &bt.bufs[next][0] || g.Addr != bt.msgs[next].Addr {
					t.Fatalf("message %d segment %d is not datagram %d", k, i, next)
				}
				if i < len(g.Buffers)-1 && len(b) != size || len(b) > size {
					t.Fatalf("message %d: segment %d is %d bytes, first %d", k, i, len(b), size)
				}
				total += len(b)
				next++
			}
			if len(g.Buffers) > maxSegments || total > maxGSOBytes {
				t.Fatalf("message %d: %d segments, %d bytes", k, len(g.Buffers), total)
			}
			if (len(g.Buffers) > 1) != (len(g.OOB) > 0) {
				t.Fatalf("message %d: %d segments with %d bytes of control", k, len(g.Buffers), len(g.OOB))
			}
		}
		if next != bt.n {
			t.Fatalf("messages carry %d datagrams of %d", next, bt.n)
		}
		for i := range bt.n {
			bt.msgs[i].Addr = nil
		}
		bt.n = 0
	}
	// 100 datagrams of 1,000 bytes to one address: 64 (segment limit),
	// then 36.
	bt := r.get(0)
	for range 100 {
		r.commit(bt, r.slot(bt)[:1000], x)
	}
	if m := bt.merge(); m != 2 || len(bt.gmsgs[0].Buffers) != 64 {
		t.Fatalf("100 x 1000 bytes: %d messages, first of %d", m, len(bt.gmsgs[0].Buffers))
	}
	bt.n = 0
	// 1,400 bytes: 46 fit in 65,507.
	for range 100 {
		r.commit(bt, r.slot(bt)[:1400], x)
	}
	if m := bt.merge(); m != 3 || len(bt.gmsgs[0].Buffers) != 46 {
		t.Fatalf("100 x 1400 bytes: %d messages, first of %d", m, len(bt.gmsgs[0].Buffers))
	}
}

// When the kernel refuses a segmented message (here: a socket with UDP
// checksums off, which GSO needs), the batch still arrives whole, one
// datagram per message, and GSO stays off.
func TestGSORefusedFallsBack(t *testing.T) {
	r := newGSORig(t)
	if !r.b.gso.Load() {
		t.Skip("this kernel has no UDP GSO")
	}
	rc, err := r.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	_ = rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_NO_CHECK, 1) })
	if serr != nil {
		t.Skipf("SO_NO_CHECK: %v", serr)
	}
	a, aAddr := r.receiver()
	bt := r.b.get(0)
	var wa [][]byte
	for i := range 10 {
		r.queue(bt, aAddr, 1, byte(i), 1000)
		wa = append(wa, want(1, byte(i), 1000))
	}
	r.b.flush(bt)
	readAll(t, a, wa)
	if r.b.gso.Load() {
		t.Fatal("GSO still on after the kernel refused it")
	}
	for i := range 5 {
		r.queue(bt, aAddr, 1, byte(20+i), 1000)
	}
	r.b.flush(bt)
	if e := r.b.errors.Load(); e != 0 {
		t.Errorf("%d send errors", e)
	}
}

// Sending a batch allocates nothing, segmented or not.
func TestFlushAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool allocate")
	}
	r := newGSORig(t)
	a, aAddr := r.receiver()
	_, bAddr := r.receiver()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := a.Read(buf); err != nil {
				return
			}
		}
	}()
	bt := r.b.get(0)
	fill := func() {
		for i := range 20 {
			r.queue(bt, aAddr, 1, byte(i), 1100)
		}
		for i := range 20 {
			r.queue(bt, bAddr, 2, byte(i), 1100)
		}
		r.b.flush(bt)
	}
	fill()
	for _, gso := range []bool{true, false} {
		r.b.gso.Store(gso && gsoSupported(r.conn))
		if n := testing.AllocsPerRun(50, fill); n != 0 {
			t.Errorf("gso=%v: %.1f allocations per batch of 40 datagrams", gso, n)
		}
	}
}
