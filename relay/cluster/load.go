package cluster

import (
	"sync"
	"time"

	"github.com/livegate/livegate/relay"
)

// HubLoad returns a Load function for a node: viewers from viewers() (the
// WHEP server's session count; nil: the sum of the hub's stream viewers),
// streams and outgoing bitrate from the hub, and the CPU cores the process
// used since the previous call.
func HubLoad(h *relay.Hub, viewers func() int, maxViewers int) func() Load {
	var mu sync.Mutex
	lastCPU, lastAt, cores := cpuTime(), time.Now(), 0.0
	return func() Load {
		l := Load{MaxViewers: maxViewers}
		var sum int64
		for _, st := range h.Streams() {
			s := st.Stats()
			sum += s.Readers
			l.BitrateOut += s.BitrateOut
			l.Streams++
		}
		l.Viewers = sum
		if viewers != nil {
			l.Viewers = int64(viewers())
		}
		mu.Lock()
		defer mu.Unlock()
		now, cpu := time.Now(), cpuTime()
		if dt := now.Sub(lastAt); dt >= 500*time.Millisecond && cpu > 0 {
			cores = float64(cpu-lastCPU) / float64(dt)
			lastCPU, lastAt = cpu, now
		}
		l.CPU = cores
		return l
	}
}
