package lite

import (
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

// batch is one fan-out worker's arena: the datagrams of the packet it is
// sending to all of its viewers, encrypted in place, and the messages that
// sendmmsg takes. Only its worker touches it.
type batch struct {
	arena []byte // batchSize slots of slotSize
	msgs  []ipv4.Message
	bufs  [][]byte // one-element Buffers of each message, reused
	n     int
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
}

func (b *batches) init(conn *net.UDPConn) {
	b.pc = ipv4.NewPacketConn(conn)
	empty := []*batch{}
	b.list.Store(&empty)
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
			bufs: make([][]byte, batchSize)}
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
	sent := 0
	for sent < bt.n {
		n, err := b.pc.WriteBatch(bt.msgs[sent:bt.n], 0)
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
	for i := range bt.n {
		bt.msgs[i].Addr = nil
	}
	bt.n = 0
}

// Stats are the transport's send counters.
type Stats struct {
	Datagrams, Syscalls, Errors, Dropped uint64
}

// Stats returns the send counters so far.
func (t *Transport) Stats() Stats {
	return Stats{Datagrams: t.batches.sent.Load(), Syscalls: t.batches.calls.Load(),
		Errors: t.batches.errors.Load(), Dropped: t.batches.dropped.Load()}
}

// Flush sends what worker w has queued with QueueRTP.
func (t *Transport) Flush(w int) {
	bt := t.batches.get(w)
	if bt.n > 0 {
		t.batches.flush(bt)
	}
}
