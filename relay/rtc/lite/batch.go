package lite

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// batchSize is how many datagrams a worker gathers before a sendmmsg: one
// packet for all of a worker's viewers usually fits, and a full batch is
// sent at once and the next one started.
const batchSize = 128

// slotSize holds an RTP packet of the largest size the relay forwards plus
// the SRTP tag and a header with CSRCs.
const slotSize = 1500

// Limits of one segmented (UDP GSO) message: older kernels take at most 64
// segments, and the whole must fit one IPv4 UDP payload.
const (
	maxSegments = 64
	maxGSOBytes = 65507
)

// After the kernel refuses a segmented message to a peer, that peer's
// datagrams go one per message for plainFor, then segmentation is tried
// again: a path MTU the kernel learned from an ICMP message is forgotten
// after net.ipv4.route.mtu_expires (10 minutes by default) and routes
// change, while a retry that fails costs one refused message (built, then
// dropped before it is segmented) and one log line at most.
//
// plainCap bounds how many such peers one worker remembers. So many
// refused destinations at once mean the refusal is not theirs but the
// route's device (no checksum offload: a tun-based VPN, offloads turned
// off), which would otherwise refuse every viewer again each time its
// minute is up: GSO is then turned off for the transport, as when the
// socket cannot segment. Forgetting a peer to make room instead made the
// rest of the batch segment it again, be refused again, and forget
// another, every frame. The memory and the per-run lookup stay bounded.
const (
	plainFor = time.Minute
	plainCap = 64
)

// warnEvery spaces the log lines about refused peers: one per refusal
// could be one per viewer per minute.
const warnEvery = 10 * time.Second

// batch is one fan-out worker's arena: the datagrams of the packet it is
// sending to all of its viewers, encrypted in place, and the messages that
// sendmmsg takes. Only its worker touches it.
type batch struct {
	arena []byte // batchSize slots of slotSize
	msgs  []ipv4.Message
	bufs  [][]byte // one-element Buffers of each message, reused
	n     int

	// With GSO: the messages actually sent, each a run of datagrams to one
	// address (Buffers a window of bufs), the index of each run's first
	// datagram, and room for each run's control message.
	gmsgs []ipv4.Message
	first []int
	oob   []byte

	// plain are the peers (their sendmmsg address, the remote's own
	// *net.UDPAddr, so one peer's path) whose segmented message the kernel
	// refused: until their time, merge gives their datagrams a message each.
	plain  [plainCap]plainPeer
	nplain int
}

type plainPeer struct {
	addr  net.Addr
	until int64 // unix ns
}

// batches holds one batch per worker index, created on first use.
type batches struct {
	pc   *ipv4.PacketConn
	mu   sync.Mutex
	list atomic.Pointer[[]*batch]

	sent    atomic.Uint64 // datagrams
	calls   atomic.Uint64 // sendmmsg system calls
	errors  atomic.Uint64
	dropped atomic.Uint64 // datagrams not sent: oversize, not encryptable
	gsoMsgs atomic.Uint64 // messages that carried more than one datagram

	fallbacks atomic.Uint64 // segmented messages refused: the peer went one datagram per message

	// gso is whether runs of datagrams to one address go as one segmented
	// message; cleared for good only when the socket itself cannot segment
	// (socketCannotSegment). A refusal the destination's route causes only
	// moves that peer to plain datagrams (batch.plain).
	gso atomic.Bool
	log atomic.Pointer[slog.Logger] // the transport's

	// write is pc.WriteBatch; tests put the kernel's refusals in it.
	write func([]ipv4.Message, int) (int, error)
	rc    syscall.RawConn // the socket, to ask why the kernel refused

	lastWarn   atomic.Int64  // unix ns of the last line about a refused peer
	unreported atomic.Uint64 // refusals since that line
}

func (b *batches) init(conn *net.UDPConn) {
	b.pc = ipv4.NewPacketConn(conn)
	b.write = b.pc.WriteBatch
	b.rc, _ = conn.SyscallConn()
	empty := []*batch{}
	b.list.Store(&empty)
	b.gso.Store(gsoSupported(conn))
}

// get returns worker w's batch.
func (b *batches) get(w int) *batch {
	if l := *b.list.Load(); w < len(l) {
		return l[w]
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.list.Load()
	if w < len(old) {
		return old[w]
	}
	l := make([]*batch, w+1)
	copy(l, old)
	for i := len(old); i <= w; i++ {
		nb := &batch{arena: make([]byte, batchSize*slotSize), msgs: make([]ipv4.Message, batchSize),
			bufs: make([][]byte, batchSize), gmsgs: make([]ipv4.Message, batchSize),
			first: make([]int, batchSize), oob: make([]byte, batchSize*gsoOOBSize)}
		for j := range nb.msgs {
			nb.msgs[j].Buffers = nb.bufs[j : j+1 : j+1]
		}
		l[i] = nb
	}
	b.list.Store(&l)
	return l[w]
}

// slot returns the next free slot of the batch, sending the batch first if
// it is full.
func (b *batches) slot(bt *batch) []byte {
	if bt.n == batchSize {
		b.flush(bt)
	}
	i := bt.n * slotSize
	return bt.arena[i : i : i+slotSize]
}

// commit adds the datagram written into the current slot, for addr.
func (b *batches) commit(bt *batch, pkt []byte, addr *net.UDPAddr) {
	bt.bufs[bt.n] = pkt
	bt.msgs[bt.n].Buffers[0] = pkt
	bt.msgs[bt.n].Addr = addr
	bt.n++
}

// flush sends the batch with as few sendmmsg calls as the kernel allows; a
// datagram the kernel refuses is skipped, not retried.
func (b *batches) flush(bt *batch) {
	if b.gso.Load() {
		b.flushGSO(bt)
	} else {
		b.send(bt.msgs[:bt.n])
	}
	for i := range bt.n {
		bt.msgs[i].Addr = nil
	}
	bt.n = 0
}

// send writes one datagram per message.
func (b *batches) send(ms []ipv4.Message) {
	sent := 0
	for sent < len(ms) {
		n, err := b.write(ms[sent:], 0)
		b.calls.Add(1)
		if n > 0 {
			b.sent.Add(uint64(n))
			sent += n
		}
		if err != nil {
			b.errors.Add(1)
			sent++ // the message that failed
		} else if n == 0 {
			break
		}
	}
}

// flushGSO sends each run of datagrams to one address as one message that
// the kernel segments. The fan-out queues a viewer's packets back to back
// (relay's runPackets), so a frame's packets to a viewer are one run: for a
// keyframe that is one pass through the kernel's UDP and IP layers instead
// of about forty.
//
// A message the kernel refuses to segment is sent again at once, one
// datagram per message, before anything after it in the batch, so its
// viewer loses nothing and gets its datagrams in order; only that peer
// goes on without segmentation (for plainFor), unless the socket itself
// cannot segment.
func (b *batches) flushGSO(bt *batch) {
	var now int64
	if bt.nplain > 0 {
		now = time.Now().UnixNano()
		bt.expire(now)
	}
	m := bt.merge(0, 0)
	used := m
	ms := bt.gmsgs
	sent := 0
	for sent < m {
		n, err := b.write(ms[sent:m], 0)
		b.calls.Add(1)
		if n > 0 {
			var d, g uint64
			for _, x := range ms[sent : sent+n] {
				d += uint64(len(x.Buffers))
				if len(x.Buffers) > 1 {
					g++
				}
			}
			b.sent.Add(d)
			b.gsoMsgs.Add(g)
			sent += n
		}
		if err != nil {
			if sent >= m {
				break
			}
			if len(ms[sent].Buffers) > 1 && gsoRefused(err) {
				if socketCannotSegment(b.rc) {
					// No destination would do: the rest goes one
					// datagram per message, and so does everything after.
					if b.gso.CompareAndSwap(true, false) {
						b.logger().Warn("lite: the socket cannot use UDP GSO, sending one datagram per message", "err", err)
					}
					b.send(bt.msgs[bt.first[sent]:bt.n])
					break
				}
				if now == 0 {
					now = time.Now().UnixNano()
				}
				addr := ms[sent].Addr
				if !bt.setPlain(addr, now+int64(plainFor)) {
					if b.gso.CompareAndSwap(true, false) {
						b.logger().Warn("lite: UDP GSO refused for more viewers than one worker tracks; the device cannot segment, sending one datagram per message",
							"viewers", plainCap, "err", err)
					}
					b.send(bt.msgs[bt.first[sent]:bt.n])
					break
				}
				b.fallbacks.Add(1)
				b.warnRefused(addr, err, now)
				// The refused message and the rest of the batch are made
				// into messages again: this peer's datagrams now go one
				// per message, everyone else's as before.
				m = bt.merge(bt.first[sent], sent)
				used = max(used, m)
				continue
			}
			b.errors.Add(1)
			sent++ // the message that failed, with all of its datagrams
		} else if n == 0 {
			break
		}
	}
	clear(ms[:used])
}

func (b *batches) logger() *slog.Logger {
	if log := b.log.Load(); log != nil {
		return log
	}
	return slog.Default()
}

// warnRefused logs a refused peer, at most once per warnEvery, with how
// many more were refused since the last line.
func (b *batches) warnRefused(addr net.Addr, err error, now int64) {
	last := b.lastWarn.Load()
	if last != 0 && now-last < int64(warnEvery) || !b.lastWarn.CompareAndSwap(last, now) {
		b.unreported.Add(1)
		return
	}
	b.logger().Warn("lite: the kernel refused UDP GSO for a viewer, sending it one datagram per message for a while",
		"addr", addr.String(), "err", err, "retry_after", plainFor, "refused_since_last_line", b.unreported.Swap(0))
}

// merge fills gmsgs from message index m on with the runs of the batch's
// datagrams from index from on: consecutive datagrams to the same address,
// all of one size except a shorter last one (what UDP_SEGMENT can express),
// at most maxSegments and maxGSOBytes each; a datagram to a peer in plain
// is a message of its own. It returns how many messages gmsgs then holds.
func (bt *batch) merge(from, m int) int {
	for i := from; i < bt.n; {
		size := len(bt.bufs[i])
		total := size
		addr := bt.msgs[i].Addr
		j := i + 1
		if bt.nplain == 0 || !bt.isPlain(addr) {
			for j < bt.n && j-i < maxSegments && bt.msgs[j].Addr == addr &&
				len(bt.bufs[j-1]) == size && len(bt.bufs[j]) <= size && total+len(bt.bufs[j]) <= maxGSOBytes {
				total += len(bt.bufs[j])
				j++
			}
		}
		g := &bt.gmsgs[m]
		g.Buffers = bt.bufs[i:j:j]
		g.Addr = addr
		g.OOB = nil
		if j-i > 1 {
			g.OOB = putGSO(bt.oob[m*gsoOOBSize:(m+1)*gsoOOBSize], size)
		}
		bt.first[m] = i
		m++
		i = j
	}
	return m
}

// isPlain reports whether addr's datagrams go one per message for now. The
// same pointer comparison as merge's: one peer's path.
func (bt *batch) isPlain(addr net.Addr) bool {
	for k := range bt.nplain {
		if bt.plain[k].addr == addr {
			return true
		}
	}
	return false
}

// setPlain sends addr's datagrams one per message until until. It reports
// false, remembering nothing, when plain is full (see plainCap).
func (bt *batch) setPlain(addr net.Addr, until int64) bool {
	k := 0
	for ; k < bt.nplain; k++ {
		if bt.plain[k].addr == addr {
			break
		}
	}
	if k == bt.nplain {
		if bt.nplain == plainCap {
			return false // see plainCap
		}
		bt.nplain++
	}
	bt.plain[k] = plainPeer{addr: addr, until: until}
	return true
}

// expire forgets the peers whose time is up: they are segmented again.
func (bt *batch) expire(now int64) {
	for k := 0; k < bt.nplain; {
		if now < bt.plain[k].until {
			k++
			continue
		}
		bt.nplain--
		bt.plain[k] = bt.plain[bt.nplain]
		bt.plain[bt.nplain] = plainPeer{}
	}
}

// Stats are the transport's send counters. Segmented counts the messages
// that carried more than one datagram (UDP GSO). GSORefused counts the
// segmented messages the kernel refused because of their destination: each
// time, that peer's datagrams went one per message (none lost) for plainFor.
type Stats struct {
	Datagrams, Syscalls, Errors, Dropped, Segmented, GSORefused uint64
	GSO                                                         bool // in use for the transport (a refused peer does not turn it off)
}

// Stats returns the send counters so far.
func (t *Transport) Stats() Stats { return t.batches.stats() }

func (b *batches) stats() Stats {
	return Stats{Datagrams: b.sent.Load(), Syscalls: b.calls.Load(), Errors: b.errors.Load(),
		Dropped: b.dropped.Load(), Segmented: b.gsoMsgs.Load(), GSORefused: b.fallbacks.Load(), GSO: b.gso.Load()}
}

// Flush sends what worker w has queued with QueueRTP.
func (t *Transport) Flush(w int) {
	bt := t.batches.get(w)
	if t.batches.log.Load() == nil {
		t.batches.log.Store(t.p.Logger)
	}
	if bt.n > 0 {
		t.batches.flush(bt)
	}
}
