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
// Packets dropped for waiting longer than MaxQueueDelay are not in it
// (they count as dropped in the stream's statistics).
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
}

func (h *fanoutHist) observe(ns int64) {
	i, _ := slices.BinarySearch(FanoutBuckets, time.Duration(ns).Seconds())
	h.counts[i].Add(1)
	h.sumNs.Add(ns)
}

// FanoutDelay sums the workers' fan-out delay histograms.
func (h *Hub) FanoutDelay() FanoutStats {
	st := FanoutStats{Buckets: make([]uint64, len(FanoutBuckets)+1)}
	var sum int64
	for _, w := range h.pool.workers {
		sum += w.fanout.sumNs.Load()
		for i := range st.Buckets {
			st.Buckets[i] += w.fanout.counts[i].Load()
		}
	}
	// The count is the buckets' sum, read in the same pass: a scrape
	// during an observation must not show more in a bucket than in all.
	for _, n := range st.Buckets {
		st.Samples += n
	}
	st.SumSeconds = time.Duration(sum).Seconds()
	return st
}
