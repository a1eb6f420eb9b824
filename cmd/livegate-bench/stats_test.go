package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	cases := []struct {
		values []float64
		p      float64
		want   float64
	}{
		{nil, 50, 0},
		{[]float64{7}, 50, 7},
		{[]float64{7}, 99, 7},
		{[]float64{1, 2}, 50, 1},
		{[]float64{1, 2}, 51, 2},
		{[]float64{1, 2, 3, 4}, 50, 2},
		{[]float64{1, 2, 3, 4}, 75, 3},
		{[]float64{1, 2, 3, 4}, 100, 4},
		{[]float64{1, 2, 3, 4, 5}, 50, 3},
		{hundred, 50, 50},
		{hundred, 95, 95},
		{hundred, 99, 99},
		{hundred, 99.5, 100},
		{hundred, 1, 1},
		{hundred, 0.1, 1},
	}
	for _, c := range cases {
		if got := percentile(c.values, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.values, c.p, got, c.want)
		}
	}
	// 20 values: p95 is the 19th, p99 the 20th.
	vals := []float64{20, 3, 1, 19, 2, 18, 4, 17, 5, 16, 6, 15, 7, 14, 8, 13, 9, 12, 10, 11}
	d := summarize(vals)
	if d.N != 20 || d.P50 != 10 || d.P95 != 19 || d.P99 != 20 || d.Max != 20 {
		t.Errorf("summarize: %+v", d)
	}
	if !slices.IsSorted(vals) {
		t.Error("summarize did not sort")
	}
	if d := summarize(nil); d != (dist{}) {
		t.Errorf("summarize(nil) = %+v", d)
	}
}

func TestSeqTracker(t *testing.T) {
	var s seqTracker
	// Wraps 65535 -> 0, loses 2, gets one retransmitted late, one duplicate.
	for _, seq := range []uint16{65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 3, 5, 6, 2, 6} {
		s.add(seq)
	}
	if s.expected() != 13 || s.received != 12 || s.duplicates != 1 || s.lost() != 1 {
		t.Errorf("expected %d received %d dup %d lost %d; want 13 12 1 1", s.expected(), s.received, s.duplicates, s.lost())
	}

	// Reordering before the first packet extends the range backwards.
	var r seqTracker
	for _, seq := range []uint16{10, 8, 9, 11} {
		r.add(seq)
	}
	if r.expected() != 4 || r.received != 4 || r.lost() != 0 {
		t.Errorf("reordered start: expected %d received %d", r.expected(), r.received)
	}

	// Long run with a gap: bits from a window ago must not count as seen.
	var l seqTracker
	seq := uint16(100)
	for range 3 * seqWindow {
		l.add(seq)
		seq++
	}
	seq += seqWindow // a window-long gap lands on the same bits
	for range 10 {
		l.add(seq)
		seq++
	}
	if l.duplicates != 0 || l.lost() != seqWindow {
		t.Errorf("after gap: dup %d lost %d, want 0 %d", l.duplicates, l.lost(), seqWindow)
	}
	// Far too late to tell: not counted either way.
	if !l.add(seq - 3*seqWindow) {
		t.Error("ancient packet not flagged")
	}
	if l.tooLate != 1 || l.duplicates != 0 {
		t.Errorf("tooLate %d dup %d", l.tooLate, l.duplicates)
	}
}

func TestProcSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := procCPU(pid)
	if err != nil {
		t.Skip("no /proc:", err)
	}
	// Spin until the kernel has accounted some CPU time to us: on a busy
	// machine 100 ms of wall time may be far less CPU time.
	start := time.Now()
	after := before
	for after-before < 30*time.Millisecond && time.Since(start) < 5*time.Second {
		for t0 := time.Now(); time.Since(t0) < 20*time.Millisecond; {
		}
		if after, err = procCPU(pid); err != nil {
			t.Fatal(err)
		}
	}
	if after-before < 30*time.Millisecond {
		t.Errorf("procCPU: %v then %v after spinning %v", before, after, time.Since(start))
	}
	if kb, err := procRSS(pid); err != nil || kb <= 0 {
		t.Errorf("procRSS: %d kB, %v", kb, err)
	}
	if u, err := udpStats(); err != nil {
		t.Errorf("udpStats: %v", err)
	} else if _, ok := u["RcvbufErrors"]; !ok {
		t.Errorf("udpStats: %v", u)
	}
}
