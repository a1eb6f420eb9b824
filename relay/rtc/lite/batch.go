package lite

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

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

	// gso is whether runs of datagrams to one address go as one segmented
	// message; cleared for good when the kernel refuses one.
	gso atomic.Bool
	log atomic.Pointer[slog.Logger] // the transport's, for that one warning
}

func (b *batches) init(conn *net.UDPConn) {
	b.pc = ipv4.NewPacketConn(conn)
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
		n, err := b.pc.WriteBatch(ms[sent:], 0)
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
func (b *batches) flushGSO(bt *batch) {
	m := bt.merge()
	ms := bt.gmsgs[:m]
	sent := 0
	for sent < m {
		n, err := b.pc.WriteBatch(ms[sent:], 0)
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
				// Not a viewer's fault: this kernel or device cannot
				// segment. The rest goes one datagram per message, and so
				// does everything after.
				if b.gso.CompareAndSwap(true, false) {
					log := b.log.Load()
					if log == nil {
						log = slog.Default()
					}
					log.Warn("lite: UDP GSO refused, sending one datagram per message", "err", err)
				}
				b.send(bt.msgs[bt.first[sent]:bt.n])
				break
			}
			b.errors.Add(1)
			sent++ // the message that failed, with all of its datagrams
		} else if n == 0 {
			break
		}
	}
	for i := range ms {
		ms[i] = ipv4.Message{}
	}
}

// merge fills gmsgs with the batch's runs: consecutive datagrams to the
// same address, all of one size except a shorter last one (what UDP_SEGMENT
// can express), at most maxSegments and maxGSOBytes each. It returns how
// many messages it made.
func (bt *batch) merge() int {
	m := 0
	for i := 0; i < bt.n; {
		size := len(bt.bufs[i])
		total := size
		addr := bt.msgs[i].Addr
		j := i + 1
		for j < bt.n && j-i < maxSegments && bt.msgs[j].Addr == addr &&
			len(bt.bufs[j-1]) == size && len(bt.bufs[j]) <= size && total+len(bt.bufs[j]) <= maxGSOBytes {
			total += len(bt.bufs[j])
			j++
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

// Stats are the transport's send counters. Segmented counts the messages
// that carried more than one datagram (UDP GSO).
type Stats struct {
	Datagrams, Syscalls, Errors, Dropped, Segmented uint64
	GSO                                             bool // still in use
}

// Stats returns the send counters so far.
func (t *Transport) Stats() Stats {
	return Stats{Datagrams: t.batches.sent.Load(), Syscalls: t.batches.calls.Load(),
		Errors: t.batches.errors.Load(), Dropped: t.batches.dropped.Load(),
		Segmented: t.batches.gsoMsgs.Load(), GSO: t.batches.gso.Load()}
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
