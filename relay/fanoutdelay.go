package relay

import (
	"slices"
	"sync/atomic"
	"time"
)

// FanoutBuckets are the upper bounds, in seconds, of the fan-out delay
// histogram (see FanoutStats).
var FanoutBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5}

// FanoutStats is this node's own share of a viewer's delay: for every
// packet, the time from its arrival from the publisher (or parent node)
// to when the last of its readers' datagrams were handed to their
// transports (for the lite transport, the kernel). It covers the queue to
// the worker and the whole fan-out, so its tail is what the last viewer of
// a busy worker waits; livegate_stream_delay_seconds is the way before it.
type FanoutStats struct {
	Samples    uint64
	SumSeconds float64
	// Buckets counts samples per FanoutBuckets bound (not cumulative),
	// then those above the last bound.
	Buckets []uint64
}

// fanoutHist is one worker's histogram: written by the worker only,
// read by any goroutine.
type fanoutHist struct {
	counts [11]atomic.Uint64 // by FanoutBuckets, then +Inf
	sumNs  atomic.Int64
	n      atomic.Uint64
}

func (h *fanoutHist) observe(ns int64) {
	i, _ := slices.BinarySearch(FanoutBuckets, time.Duration(ns).Seconds())
	h.counts[i].Add(1)
	h.sumNs.Add(ns)
	h.n.Add(1)
}

// FanoutDelay sums the workers' fan-out delay histograms.
func (h *Hub) FanoutDelay() FanoutStats {
	st := FanoutStats{Buckets: make([]uint64, len(FanoutBuckets)+1)}
	var sum int64
	for _, w := range h.pool.workers {
		st.Samples += w.fanout.n.Load()
		sum += w.fanout.sumNs.Load()
		for i := range st.Buckets {
			st.Buckets[i] += w.fanout.counts[i].Load()
		}
	}
	st.SumSeconds = time.Duration(sum).Seconds()
	return st
}
