package relay

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Sink is where a reader's packets go: a WHEP viewer's track, a relay link,
// an RTSP session. Implementations must be safe for concurrent use (the
// worker and the NACK path may write at the same time) and must not block.
type Sink interface {
	WriteRTP(h *rtp.Header, payload []byte) error
	WriteSenderReport(ntpTime uint64, rtpTime uint32, packets, octets uint32) error
}

// BatchSink is a Sink that can queue a packet into a per-worker batch
// instead of sending it at once: the worker calls Flush on the returned
// Flusher once it has queued the packet for all its readers, so one system
// call sends it to all of them. QueueRTP must not keep h or payload.
type BatchSink interface {
	Sink
	QueueRTP(worker int, h *rtp.Header, payload []byte) (Flusher, error)
}

// Flusher sends what a worker queued through a BatchSink.
type Flusher interface {
	Flush(worker int)
}

// CadenceSink is a Sink that needs keyframes at a bounded interval: a
// muxer that cuts segments or feeds a CDN on keyframes (HLS, RTMP push,
// recordings, RTSP out). While a track has one, the relay asks the
// publisher for a keyframe whenever the current GOP reaches
// Params.KeyframeMaxInterval. WebRTC viewers do not implement it: they ask
// for keyframes themselves when they need one, and a stream watched only
// over WHEP costs its publisher no extra keyframes.
type CadenceSink interface {
	Sink
	KeyframeCadence() bool
}

// Reader is one consumer of one track. It starts at a keyframe, gets its
// own contiguous sequence numbers (so packets dropped while it was behind
// leave no gap to NACK), and resynchronises at the next keyframe after a drop.
type Reader struct {
	track  *Track
	sink   Sink
	batch  BatchSink // sink, if it batches; nil otherwise
	worker int

	// Owned by the worker goroutine.
	started bool
	lastSeq uint16
	from    uint16     // track sequence number the current mapping starts at
	hdr     rtp.Header // scratch: a header passed to the sink must not escape per packet
	// backlog holds the rest of a cached GOP being sent at a bounded rate,
	// and live packets that arrive meanwhile (nil when not catching up).
	backlog []*Packet

	live     atomic.Bool // has started: NACKs can be answered
	fallback *time.Timer // serves the GOP cache if no fresh keyframe comes

	// mapping packs the reader's sequence offset (low 16 bits) and the first
	// reader sequence number under that offset (high 16 bits), so the NACK
	// path reads both in one load.
	mapping atomic.Uint32
	needKey atomic.Bool
	closed  atomic.Bool
	cadence bool // counted in track.cadenceReaders

	packets  atomic.Uint32
	octets   atomic.Uint32
	bytesOut atomic.Uint64
	dropped  atomic.Uint64
	resent   atomic.Uint64
}

// deliver takes one live packet for the reader. It runs on the reader's
// worker.
func (r *Reader) deliver(p *Packet, w *worker) {
	if r.backlog != nil {
		r.queue(p)
		return
	}
	r.send(p, w)
}

// Catching up: a new reader's cached GOP (up to a few hundred packets) is
// paced instead of sent at once, which would overflow the viewer's socket
// buffer or a router queue on the way and lose the very keyframe it needs.
const (
	catchUpChunk   = 32                   // packets per step
	catchUpPeriod  = 4 * time.Millisecond // between steps: about 8,000 packets/s
	maxBacklogSize = 4096
)

// catchUp starts sending burst (the cached GOP) at a bounded rate.
func (r *Reader) catchUp(burst []*Packet, w *worker) {
	r.backlog = append(make([]*Packet, 0, len(burst)+64), burst...)
	r.drain(w)
}

// queue appends a live packet behind the backlog, or gives up catching up
// when the backlog is full: the reader then resumes at the next keyframe.
func (r *Reader) queue(p *Packet) {
	if len(r.backlog) >= maxBacklogSize {
		r.backlog = nil
		r.drop()
		r.needKey.Store(true)
		return
	}
	r.backlog = append(r.backlog, p)
}

// drain sends the next chunk of the backlog and schedules the one after.
func (r *Reader) drain(w *worker) {
	if r.closed.Load() {
		r.backlog = nil
		return
	}
	n := min(catchUpChunk, len(r.backlog))
	for _, p := range r.backlog[:n] {
		r.send(p, w)
	}
	clear(r.backlog[:n])
	r.backlog = r.backlog[n:]
	if len(r.backlog) == 0 {
		r.backlog = nil
		return
	}
	r.scheduleDrain(w)
}

// scheduleDrain queues the next catch-up step after catchUpPeriod, trying
// again later while the worker's queue is full.
func (r *Reader) scheduleDrain(w *worker) {
	time.AfterFunc(catchUpPeriod, func() {
		select {
		case <-w.done:
			return
		default:
		}
		if r.closed.Load() {
			return
		}
		if !w.offer(job{drain: r}) {
			r.scheduleDrain(w)
		}
	})
}

// send writes one packet to the sink. It runs on the reader's worker.
func (r *Reader) send(p *Packet, w *worker) {
	if r.closed.Load() {
		return
	}
	resync := false
	if !r.started || r.needKey.Load() {
		if !p.Keyframe {
			return
		}
		r.needKey.Store(false)
		resync = true
	}
	m := r.mapping.Load()
	off := uint16(m)
	if resync {
		first := p.Header.SequenceNumber
		if r.started {
			first = r.lastSeq + 1
		}
		off = first - p.Header.SequenceNumber
		r.mapping.Store(uint32(first)<<16 | uint32(off))
		r.started = true
		r.live.Store(true)
		r.lastSeq = first - 1
		r.from = p.Header.SequenceNumber
	} else if p.Header.SequenceNumber != r.from && !seqNewer(p.Header.SequenceNumber, r.from) {
		return // a late packet from before the resync: its number is taken
	}
	h := &r.hdr
	*h = p.Header
	h.SequenceNumber += off
	if seqNewer(h.SequenceNumber, r.lastSeq) {
		r.lastSeq = h.SequenceNumber
	}
	if r.batch != nil {
		f, err := r.batch.QueueRTP(w.id, h, p.Payload)
		if err != nil {
			return
		}
		w.pendingFlush(f)
	} else if err := r.sink.WriteRTP(h, p.Payload); err != nil {
		return
	}
	r.packets.Add(1)
	r.octets.Add(uint32(len(p.Payload)))
	r.bytesOut.Add(uint64(len(p.Payload) + 12))
}

func (r *Reader) senderReport(sr *senderReport) {
	if r.closed.Load() || !r.started {
		return
	}
	_ = r.sink.WriteSenderReport(sr.ntp, sr.rtp, r.packets.Load(), r.octets.Load())
}

// drop records that packets for this reader were discarded because its
// worker was behind; it will resume at the next keyframe sent after them
// (the track tells the worker with the next job it queues for it).
func (r *Reader) drop() {
	r.dropped.Add(1)
}

// Retransmit answers a NACK from the reader with packets from the track's
// shared history. Sequence numbers are in the reader's numbering.
func (r *Reader) Retransmit(seqs []uint16) {
	if !r.live.Load() {
		return
	}
	m := r.mapping.Load()
	off, first := uint16(m), uint16(m>>16)
	for _, seq := range seqs {
		if r.closed.Load() {
			return
		}
		if seq != first && !seqNewer(seq, first) {
			continue // before our last resync: that numbering is gone
		}
		p := r.track.hist.get(seq - off)
		if p == nil {
			continue
		}
		h := p.Header
		h.SequenceNumber = seq
		if r.sink.WriteRTP(&h, p.Payload) == nil {
			r.resent.Add(1)
		}
	}
}

// RequestKeyframe forwards a reader's PLI or FIR; the track coalesces them.
func (r *Reader) RequestKeyframe() { r.track.RequestKeyframe() }

// Track is the track this reader consumes.
func (r *Reader) Track() *Track { return r.track }

// Dropped is the number of packets dropped for this reader.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Close detaches the reader from its track. It is idempotent.
func (r *Reader) Close() {
	if r.closed.Swap(true) {
		return
	}
	r.track.removeReader(r)
}
