package lite

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
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
		m := bt.merge(0, 0)
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
	if m := bt.merge(0, 0); m != 2 || len(bt.gmsgs[0].Buffers) != 64 {
		t.Fatalf("100 x 1000 bytes: %d messages, first of %d", m, len(bt.gmsgs[0].Buffers))
	}
	bt.n = 0
	// 1,400 bytes: 46 fit in 65,507.
	for range 100 {
		r.commit(bt, r.slot(bt)[:1400], x)
	}
	if m := bt.merge(0, 0); m != 3 || len(bt.gmsgs[0].Buffers) != 46 {
		t.Fatalf("100 x 1400 bytes: %d messages, first of %d", m, len(bt.gmsgs[0].Buffers))
	}
}

// Sending a batch allocates nothing: segmented, not segmented, and with a
// viewer whose segmented messages the kernel refused (sent plain, next to
// one still segmented).
func TestFlushAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool allocate")
	}
	r := newGSORig(t)
	a, aAddr := r.receiver()
	b, bAddr := r.receiver()
	for _, c := range []*net.UDPConn{a, b} {
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
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
	if !gsoSupported(r.conn) {
		return
	}
	r.b.gso.Store(true)
	refused := r.refuseTo(aAddr, syscall.EMSGSIZE)
	fill() // the refusal itself logs, once
	seg := r.b.gsoMsgs.Load()
	if n := testing.AllocsPerRun(50, fill); n != 0 {
		t.Errorf("one viewer refused: %.1f allocations per batch of 40 datagrams", n)
	}
	if *refused != 1 || r.b.gsoMsgs.Load() != seg+51 || !r.b.gso.Load() {
		t.Errorf("one viewer refused: refused %d, %d segmented messages in 51 batches, GSO %v; want 1, 51, true",
			*refused, r.b.gsoMsgs.Load()-seg, r.b.gso.Load())
	}
}

// refuseTo makes the rig's kernel refuse, with err, every segmented message
// to one address, as a route with a small MTU (EMSGSIZE, EINVAL before
// Linux 6.14) or without checksum offload (EIO) does. It counts the
// refusals. No allocation: TestFlushAllocatesNothing goes through it.
func (r *gsoRig) refuseTo(to *net.UDPAddr, err error) *int {
	var refused int
	write := r.b.pc.WriteBatch
	r.b.write = func(ms []ipv4.Message, flags int) (int, error) {
		for i := range ms {
			if len(ms[i].Buffers) > 1 && ms[i].Addr == net.Addr(to) {
				if i == 0 {
					refused++
					return 0, err
				}
				return write(ms[:i], flags)
			}
		}
		return write(ms, flags)
	}
	return &refused
}

// A refusal that depends on the destination (one viewer behind a path with
// a smaller MTU, or one that sent an ICMP "fragmentation needed" for its
// own address) moves only that viewer to one datagram per message: it
// still gets every datagram in order, the other viewer's runs stay
// segmented, GSO stays on, and the viewer is tried again after a while.
func TestGSORefusedForOnePeerOnly(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMSGSIZE, syscall.EINVAL, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			r := newGSORig(t)
			if !r.b.gso.Load() {
				t.Skip("this kernel has no UDP GSO")
			}
			a, aAddr := r.receiver()
			b, bAddr := r.receiver()
			refused := r.refuseTo(aAddr, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", errno)})
			bt := r.b.get(0)
			var wa, wb [][]byte
			seq := byte(0)
			interleaved := func(n int) {
				// One packet each, in turn (audio): runs of one.
				for range n {
					r.queue(bt, aAddr, 1, seq, 1100)
					wa = append(wa, want(1, seq, 1100))
					r.queue(bt, bAddr, 2, seq, 1100)
					wb = append(wb, want(2, seq, 1100))
					seq++
				}
			}
			run := func(to *net.UDPAddr, viewer byte, n int, w *[][]byte) {
				for range n {
					r.queue(bt, to, viewer, seq, 1100)
					*w = append(*w, want(viewer, seq, 1100))
					seq++
				}
			}
			run(aAddr, 1, 20, &wa)
			run(bAddr, 2, 20, &wb)
			run(aAddr, 1, 70, &wa) // two more messages' worth: the batch fills on the way
			run(bAddr, 2, 10, &wb)
			interleaved(2)
			r.b.flush(bt)
			readAll(t, a, wa)
			readAll(t, b, wb)
			if *refused != 1 {
				t.Errorf("a's segmented messages refused %d times, want 1 (then it is sent plain)", *refused)
			}
			st := r.b.stats()
			if !st.GSO {
				t.Fatal("one viewer's refusal turned GSO off for the transport")
			}
			if st.GSORefused != 1 || st.Errors != 0 {
				t.Errorf("GSORefused %d, Errors %d; want 1, 0", st.GSORefused, st.Errors)
			}
			if st.Datagrams != uint64(len(wa)+len(wb)) {
				t.Errorf("sent %d datagrams, want %d", st.Datagrams, len(wa)+len(wb))
			}
			// Next batch: a is not offered a segmented message, b is.
			wa, wb = nil, nil
			seg := st.Segmented
			run(aAddr, 1, 10, &wa)
			run(bAddr, 2, 10, &wb)
			r.b.flush(bt)
			readAll(t, a, wa)
			readAll(t, b, wb)
			st = r.b.stats()
			if *refused != 1 || st.GSORefused != 1 {
				t.Errorf("a offered a segmented message again at once: refused %d, GSORefused %d", *refused, st.GSORefused)
			}
			if st.Segmented != seg+1 {
				t.Errorf("b's run: Segmented %d -> %d, want one more", seg, st.Segmented)
			}
			// After plainFor, a is tried again (and here refused again).
			for k := range bt.nplain {
				bt.plain[k].until = time.Now().Add(-time.Second).UnixNano()
			}
			wa = nil
			run(aAddr, 1, 10, &wa)
			r.b.flush(bt)
			readAll(t, a, wa)
			if st := r.b.stats(); *refused != 2 || st.GSORefused != 2 || !st.GSO {
				t.Errorf("after plainFor: refused %d, GSORefused %d, GSO %v; want 2, 2, true", *refused, st.GSORefused, st.GSO)
			}
		})
	}
}

// However many peers are refused, a worker remembers at most plainCap of
// them, a datagram to one of them is a message of its own, and a forgotten
// peer is only segmented again (never lost).
func TestPlainPeersBounded(t *testing.T) {
	r := &batches{}
	empty := []*batch{}
	r.list.Store(&empty)
	bt := r.get(0)
	now := time.Now().UnixNano()
	addrs := make([]*net.UDPAddr, 3*plainCap)
	for i := range addrs {
		addrs[i] = &net.UDPAddr{IP: net.IPv4(10, 0, byte(i>>8), byte(i)), Port: 5000}
		if ok := bt.setPlain(addrs[i], now+int64(i)); ok != (i < plainCap) {
			t.Fatalf("peer %d remembered %v: want the first %d only (then the transport stops segmenting)", i, ok, plainCap)
		}
		if bt.nplain > plainCap {
			t.Fatalf("%d peers remembered", bt.nplain)
		}
	}
	for i, a := range addrs {
		if got, want := bt.isPlain(a), i < plainCap; got != want {
			t.Fatalf("peer %d: plain %v, want %v (none forgotten to make room)", i, got, want)
		}
	}
	addrs = addrs[:plainCap]
	// Refused again while remembered: the same entry, a later time.
	bt.setPlain(addrs[len(addrs)-1], now+int64(time.Hour))
	if bt.nplain != plainCap {
		t.Fatalf("%d peers after a repeat, want %d", bt.nplain, plainCap)
	}
	plainA, other := addrs[len(addrs)-1], &net.UDPAddr{IP: net.IPv4(10, 9, 9, 9), Port: 1}
	for range 5 {
		r.commit(bt, r.slot(bt)[:1000], plainA)
	}
	for range 5 {
		r.commit(bt, r.slot(bt)[:1000], other)
	}
	if m := bt.merge(0, 0); m != 6 || len(bt.gmsgs[5].Buffers) != 5 {
		t.Fatalf("5 datagrams to a plain peer and 5 to another: %d messages, last of %d; want 6, 5", m, len(bt.gmsgs[m-1].Buffers))
	}
	bt.expire(now + int64(time.Minute))
	if bt.nplain != 1 || !bt.isPlain(plainA) {
		t.Fatalf("after expiry %d peers remembered, want only the one refused again", bt.nplain)
	}
	bt.expire(now + int64(2*time.Hour))
	if bt.nplain != 0 {
		t.Fatalf("%d peers remembered after every time is up", bt.nplain)
	}
}

// A device that refuses every segmented message (no checksum offload)
// refuses more viewers than a worker tracks: GSO is then turned off for
// the transport instead of forgetting one refused viewer to remember the
// next, which made every frame segment, be refused and resend (found in
// review). Nothing is lost or reordered on the way.
func TestGSORefusedByEveryoneTurnsItOff(t *testing.T) {
	r := newGSORig(t)
	if !r.b.gso.Load() {
		t.Skip("this kernel has no UDP GSO")
	}
	var refused int
	write := r.b.pc.WriteBatch
	r.b.write = func(ms []ipv4.Message, flags int) (int, error) {
		for i := range ms {
			if len(ms[i].Buffers) > 1 {
				if i == 0 {
					refused++
					return 0, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", syscall.EIO)}
				}
				return write(ms[:i], flags)
			}
		}
		return write(ms, flags)
	}
	bt := r.b.get(0)
	type rx struct {
		c    *net.UDPConn
		addr *net.UDPAddr
		want [][]byte
	}
	peers := make([]rx, plainCap+8)
	for i := range peers {
		peers[i].c, peers[i].addr = r.receiver()
	}
	for round := range 2 {
		for i := range peers {
			for k := range 3 {
				seq := byte(round*3 + k)
				r.queue(bt, peers[i].addr, byte(i), seq, 1100)
				peers[i].want = append(peers[i].want, want(byte(i), seq, 1100))
			}
			if i%20 == 19 {
				r.b.flush(bt)
			}
		}
		r.b.flush(bt)
	}
	for _, p := range peers {
		readAll(t, p.c, p.want)
	}
	st := r.b.stats()
	if st.GSO {
		t.Fatal("GSO still on after more viewers than a worker tracks were refused")
	}
	if refused != plainCap+1 || st.Errors != 0 {
		t.Errorf("refused %d times (want %d: each tracked viewer once, then the one that did not fit), errors %d", refused, plainCap+1, st.Errors)
	}
}
