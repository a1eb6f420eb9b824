package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pool is the fixed set of fan-out workers. Every reader belongs to one
// worker; a track hands each packet once to each worker that has readers of
// it, and that worker writes it to its readers. The per-packet, per-reader
// work is thus spread over the cores without a goroutine per reader.
type pool struct {
	workers []*worker
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type worker struct {
	id       int
	jobs     chan job
	readers  atomic.Int64 // load, for placing new readers
	maxDelay time.Duration
	done     <-chan struct{} // closed when the pool stops

	// Owned by the worker goroutine.
	flush []Flusher // batches to send when the current step is done
	group []job     // packet jobs taken together (see runPackets)

	fanout fanoutHist
}

// epoch gives jobs a cheap monotonic timestamp.
var epoch = time.Now()

func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// job is one unit of work for a worker: a packet for a list of readers, a
// burst of cached packets for one new reader, or a sender report.
type job struct {
	readers *[]*Reader
	pkt     *Packet
	burst   []*Packet
	reader  *Reader
	sr      *senderReport
	drain   *Reader // next catch-up step of a reader
	// lost, if set, lists readers that missed packets queued before this
	// job: they must wait for a keyframe before anything else.
	lost *[]*Reader
	at   int64 // sinceEpoch when queued, for packet jobs
}

type senderReport struct {
	ntp uint64
	rtp uint32
}

func newPool(workers, queue int, maxDelay time.Duration) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{cancel: cancel}
	for i := range workers {
		w := &worker{id: i, jobs: make(chan job, queue), maxDelay: maxDelay, done: ctx.Done()}
		p.workers = append(p.workers, w)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w.run(ctx)
		}()
	}
	return p
}

func (p *pool) close() {
	p.cancel()
	p.wg.Wait()
}

// leastLoaded returns the index of the worker with the fewest readers.
func (p *pool) leastLoaded() int {
	best := 0
	for i, w := range p.workers {
		if w.readers.Load() < p.workers[best].readers.Load() {
			best = i
		}
	}
	return best
}

// offer queues a job without blocking; false means the worker is behind.
func (w *worker) offer(j job) bool {
	select {
	case w.jobs <- j:
		return true
	default:
		return false
	}
}

func (w *worker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-w.jobs:
			for more := true; more; {
				if j.pkt == nil {
					j.run(w)
					w.flushPending()
					break
				}
				j, more = w.runPackets(j)
			}
		}
	}
}

// maxGroup bounds how many queued packets a worker sends together.
const maxGroup = 64

// runPackets sends packet job j and every packet job already queued behind
// it for the same readers, reader by reader: each reader gets all of them
// (typically the rest of a video frame that arrived while the worker was
// busy) before the next reader gets any. Going packet by packet instead
// makes every reader wait for the whole frame to be sent to all readers
// before its last packet leaves: with N readers that doubles the median
// time to a complete frame. Order per reader is unchanged.
// It returns the job it took from the queue that did not fit the group.
func (w *worker) runPackets(j job) (job, bool) {
	w.group = append(w.group[:0], j)
	var next job
	have := false
	for len(w.group) < maxGroup {
		select {
		case n := <-w.jobs:
			// Only packets for the same readers with nothing lost before
			// them join the group; anything else runs after it.
			if n.pkt != nil && n.readers == j.readers && n.lost == nil {
				w.group = append(w.group, n)
				continue
			}
			next, have = n, true
		default:
		}
		break
	}
	now := sinceEpoch()
	live := w.group[:0]
	for _, g := range w.group {
		if w.maxDelay > 0 && now-g.at > int64(w.maxDelay) {
			g.expire()
			continue
		}
		live = append(live, g)
	}
	if len(live) > 0 {
		live[0].markLost()
		for _, r := range *live[0].readers {
			for _, g := range live {
				r.deliver(g.pkt, w)
			}
		}
	}
	w.flushPending()
	if len(live) > 0 {
		done := sinceEpoch()
		for _, g := range live {
			w.fanout.observe(done - g.at)
		}
	}
	clear(w.group)
	w.group = w.group[:0]
	return next, have
}

// pendingFlush notes that f has packets of this worker to send.
func (w *worker) pendingFlush(f Flusher) {
	for _, x := range w.flush {
		if x == f {
			return
		}
	}
	w.flush = append(w.flush, f)
}

func (w *worker) flushPending() {
	for i, f := range w.flush {
		f.Flush(w.id)
		w.flush[i] = nil
	}
	w.flush = w.flush[:0]
}

// expire drops a packet that waited too long in the queue (the worker is
// short of CPU): late media is worse than a short freeze, so its readers
// resume at the next keyframe instead of falling further behind.
func (j *job) expire() {
	j.markLost()
	for _, r := range *j.readers {
		r.drop()
		if !r.needKey.Swap(true) && r.started {
			r.track.RequestKeyframe()
		}
	}
	if len(*j.readers) > 0 {
		(*j.readers)[0].track.dropped.Add(uint64(len(*j.readers)))
	}
}

func (j *job) markLost() {
	if j.lost != nil {
		for _, r := range *j.lost {
			// Ask for a keyframe so the reader does not wait a whole GOP;
			// the track coalesces the requests of every reader.
			if !r.needKey.Swap(true) && r.started {
				r.track.RequestKeyframe()
			}
		}
	}
}

func (j *job) run(w *worker) {
	j.markLost()
	switch {
	case j.pkt != nil:
		for _, r := range *j.readers {
			r.deliver(j.pkt, w)
		}
	case j.burst != nil:
		if j.reader.started || j.reader.backlog != nil {
			return // started on a fresh keyframe meanwhile: the cache is older
		}
		j.reader.catchUp(j.burst, w)
	case j.drain != nil:
		if j.drain.backlog != nil {
			j.drain.drain(w)
		}
	case j.sr != nil:
		for _, r := range *j.readers {
			r.senderReport(j.sr)
		}
	}
}
