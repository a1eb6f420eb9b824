package relay

import (
	"context"
	"sync"
	"sync/atomic"
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
	jobs    chan job
	readers atomic.Int64 // load, for placing new readers
}

// job is one unit of work for a worker: a packet for a list of readers, a
// burst of cached packets for one new reader, or a sender report.
type job struct {
	readers *[]*Reader
	pkt     *Packet
	burst   []*Packet
	reader  *Reader
	sr      *senderReport
	// lost, if set, lists readers that missed packets queued before this
	// job: they must wait for a keyframe before anything else.
	lost *[]*Reader
}

type senderReport struct {
	ntp uint64
	rtp uint32
}

func newPool(workers, queue int) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{cancel: cancel}
	for range workers {
		w := &worker{jobs: make(chan job, queue)}
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
			j.run()
		}
	}
}

func (j *job) run() {
	if j.lost != nil {
		for _, r := range *j.lost {
			// Ask for a keyframe so the reader does not wait a whole GOP;
			// the track coalesces the requests of every reader.
			if !r.needKey.Swap(true) && r.started {
				r.track.RequestKeyframe()
			}
		}
	}
	switch {
	case j.pkt != nil:
		for _, r := range *j.readers {
			r.deliver(j.pkt)
		}
	case j.burst != nil:
		if j.reader.started {
			return // started on a fresh keyframe meanwhile: the cache is older
		}
		for _, p := range j.burst {
			j.reader.deliver(p)
		}
	case j.sr != nil:
		for _, r := range *j.readers {
			r.senderReport(j.sr)
		}
	}
}
