package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// What the tool reads while it runs: packets its viewers received, the
// gateway's CPU and RSS from /proc, its own CPU, the gateway's counters for
// the stream; the progress line; and the end of the run (closeAll).
// packets is the number of RTP packets all viewers have read so far.
func (b *bench) packets() uint64 {
	var n uint64
	for _, v := range b.connected() {
		n += v.videoPkts.Load() + v.audioPkts.Load()
	}
	return n
}

// gatewayCPU is the gateway's CPU time so far, or -1.
func (b *bench) gatewayCPU() time.Duration {
	if b.cfg.pid == 0 {
		return -1
	}
	d, err := procCPU(b.cfg.pid)
	if err != nil {
		return -1
	}
	return d
}

func selfCPU() time.Duration {
	u, s := selfCPUSplit()
	return u + s
}

// selfCPUSplit is the tool's own user and system CPU time so far.
func selfCPUSplit() (user, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// progress prints one line a second to stderr until done, and samples the
// gateway's RSS.
func (b *bench) progress(done <-chan struct{}, stderr io.Writer) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	lastPkts := b.packets()
	lastGW := b.gatewayCPU()
	lastHost, _ := readHostCPU()
	lastSelf := selfCPU()
	latIdx := 0
	b.sampleRSS()
	for {
		select {
		case <-done:
			b.sampleRSS()
			return
		case <-tick.C:
		}
		now := time.Now()
		dt := now.Sub(last).Seconds()
		pkts := b.packets()
		gw := b.gatewayCPU()
		host, _ := readHostCPU()
		self := selfCPU()
		var lat []float64
		lat, latIdx = b.lat.seiSince(latIdx, true)
		b.sampleRSS()
		if !b.cfg.quiet {
			b.mu.Lock()
			conn, failed := len(b.viewers), b.failed
			b.mu.Unlock()
			line := fmt.Sprintf("t=%5.1fs viewers %d/%d connected, %d connecting, %d failed | %6.0f pkt/s",
				now.Sub(b.start).Seconds(), conn, b.cfg.viewers, b.connecting.Load(), failed, float64(pkts-lastPkts)/dt)
			if len(lat) > 0 {
				line += fmt.Sprintf(" | latency p50 %.2f ms (n=%d)", summarize(lat).P50, len(lat))
			} else {
				line += " | latency p50 -"
			}
			if gw >= 0 && lastGW >= 0 {
				line += fmt.Sprintf(" | gateway %.2f cores, %.0f MiB", float64(gw-lastGW)/float64(now.Sub(last)), float64(b.rssMaxKB.Load())/1024)
			}
			wall := float64(now.Sub(last))
			line += fmt.Sprintf(" | bench %.2f, host busy %.2f, steal %.2f cores",
				float64(self-lastSelf)/wall, float64(host.busy-lastHost.busy)/wall, float64(host.steal-lastHost.steal)/wall)
			fmt.Fprintln(stderr, line)
		}
		last, lastPkts, lastGW, lastHost, lastSelf = now, pkts, gw, host, self
	}
}

func (b *bench) sampleRSS() {
	if b.cfg.pid == 0 {
		return
	}
	if kb, err := procRSS(b.cfg.pid); err == nil && kb > b.rssMaxKB.Load() {
		b.rssMaxKB.Store(kb)
	}
}

// closeAll ends every viewer session (DELETE), a few at a time.
func (b *bench) closeAll() {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, v := range b.connected() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v.close()
		}()
	}
	wg.Wait()
}

// streamStats fetches the gateway's counters for the stream.
func (b *bench) streamStats() *streamReport {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/api/v1/streams/"+b.cfg.path, nil)
	if err != nil {
		return nil
	}
	resp, err := (&http.Client{Transport: b.transport}).Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var st struct {
		Viewers    int64   `json:"viewers"`
		BitrateIn  float64 `json:"bitrateIn"`
		BitrateOut float64 `json:"bitrateOut"`
		Tracks     []struct {
			Kind             string `json:"kind"`
			PacketsIn        uint64 `json:"packetsIn"`
			Dropped          uint64 `json:"dropped"`
			Retransmitted    uint64 `json:"retransmitted"`
			KeyframeRequests uint64 `json:"keyframeRequests"`
			KeyframesAsked   uint64 `json:"keyframesAskedOfPublisher"`
		} `json:"tracks"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil
	}
	r := &streamReport{Viewers: st.Viewers, BitrateOutMbps: round3(st.BitrateOut / 1e6)}
	for _, t := range st.Tracks {
		c := trackCounters{
			PacketsIn: t.PacketsIn, Dropped: t.Dropped, Retransmitted: t.Retransmitted,
			KeyframeRequests: t.KeyframeRequests, KeyframesAsked: t.KeyframesAsked,
		}
		switch t.Kind {
		case "video":
			r.Video = &c
		case "audio":
			r.Audio = &c
		}
	}
	return r
}
