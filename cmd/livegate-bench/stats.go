package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted values: the smallest value such that at least p% of the values
// are less than or equal to it. It returns 0 for no values.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(rank, 1)
	rank = min(rank, n)
	return sorted[rank-1]
}

// dist summarises a set of samples in milliseconds.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// summarize sorts values in place and summarises them.
func summarize(values []float64) dist {
	if len(values) == 0 {
		return dist{}
	}
	slices.Sort(values)
	return dist{
		N:   len(values),
		P50: round3(percentile(values, 50)),
		P95: round3(percentile(values, 95)),
		P99: round3(percentile(values, 99)),
		Max: round3(values[len(values)-1]),
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// seqWindow is how far back (in packets) a late or retransmitted packet is
// still told apart from a duplicate.
const seqWindow = 4096

// seqTracker counts the packets of one RTP stream in extended (unwrapped)
// sequence number space: unique packets, duplicates (e.g. a NACKed packet
// arriving twice) and, from first and highest, how many were expected.
type seqTracker struct {
	started        bool
	first, highest int64
	received       uint64 // unique
	duplicates     uint64
	tooLate        uint64 // older than the window: cannot tell, not counted
	seen           [seqWindow / 64]uint64
}

// add records a packet and reports whether it was a duplicate (or too old
// to tell).
func (t *seqTracker) add(seq uint16) (dup bool) {
	if !t.started {
		t.started = true
		ext := int64(seq) + 1<<16 // room for reordering before the first
		t.first, t.highest = ext, ext
		t.set(ext)
		t.received++
		return false
	}
	ext := t.highest + int64(int16(seq-uint16(t.highest)))
	switch {
	case ext > t.highest:
		if ext-t.highest >= seqWindow {
			clear(t.seen[:])
		} else {
			for s := t.highest + 1; s <= ext; s++ {
				t.clearBit(s)
			}
		}
		t.highest = ext
	case ext <= t.highest-seqWindow:
		t.tooLate++
		return true
	case ext < t.first:
		// Reordered ahead of the first packet we saw; the bits for
		// these were never set, so nothing stale can match.
		for s := ext; s < t.first; s++ {
			t.clearBit(s)
		}
		t.first = ext
	}
	if t.isSet(ext) {
		t.duplicates++
		return true
	}
	t.set(ext)
	t.received++
	return false
}

func (t *seqTracker) set(s int64)        { t.seen[(s%seqWindow)/64] |= 1 << (s % 64) }
func (t *seqTracker) clearBit(s int64)   { t.seen[(s%seqWindow)/64] &^= 1 << (s % 64) }
func (t *seqTracker) isSet(s int64) bool { return t.seen[(s%seqWindow)/64]&(1<<(s%64)) != 0 }

// has reports whether seq was received, or is too old to tell (then
// asking for it again is pointless).
func (t *seqTracker) has(seq uint16) bool {
	if !t.started {
		return false
	}
	ext := t.highest + int64(int16(seq-uint16(t.highest)))
	if ext <= t.highest-seqWindow || ext < t.first {
		return true
	}
	return ext <= t.highest && t.isSet(ext)
}

// expected is the number of packets between the first and the highest.
func (t *seqTracker) expected() uint64 {
	if !t.started {
		return 0
	}
	return uint64(t.highest - t.first + 1)
}

// lost is expected minus received, never negative.
func (t *seqTracker) lost() uint64 {
	e := t.expected()
	if t.received >= e {
		return 0
	}
	return e - t.received
}

func pct(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return round3(100 * float64(part) / float64(whole))
}

// userHZ is the unit of utime/stime in /proc/PID/stat; Linux fixes it at
// 100 for user space whatever the kernel's internal tick rate.
const userHZ = 100

// procCPU returns the user+system CPU time a process has used so far.
func procCPU(pid int) (time.Duration, error) {
	u, s, err := procCPUSplit(pid)
	return u + s, err
}

// procCPUSplit returns the user and the system CPU time a process has used
// so far.
func procCPUSplit(pid int) (user, system time.Duration, err error) {
	if pid == 0 {
		return 0, 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// comm (field 2) may contain spaces and parentheses: fields after it
	// start behind the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return time.Duration(ut) * time.Second / userHZ, time.Duration(st) * time.Second / userHZ, nil
}

// procRSS returns a process's resident set size (VmRSS) in KiB.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// udpStats returns the host's UDP counters from /proc/net/snmp
// (InErrors, RcvbufErrors, SndbufErrors): kernel drops on any socket of
// the machine, which on loopback tell a full receive buffer from loss in
// an application.
func udpStats() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		out := map[string]int64{}
		for i, n := range names {
			if i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				out[n] = v
			}
		}
		return out, nil
	}
	return nil, errors.New("no Udp line in /proc/net/snmp")
}

// udpSocketDrops sums the kernel's per-socket drop counters (the last
// column of /proc/net/udp and udp6: datagrams that did not fit the socket's
// receive buffer) over the UDP sockets the process holds, and counts them.
func udpSocketDrops(pid int) (drops int64, sockets int, err error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	inodes := map[string]bool{}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(s, "]")] = true
		}
	}
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
			if len(f) < 13 || !inodes[f[9]] {
				continue
			}
			n, _ := strconv.ParseInt(f[12], 10, 64)
			drops += n
			sockets++
		}
	}
	return drops, sockets, nil
}

// hostCPU is the machine-wide CPU time from the first line of /proc/stat.
type hostCPU struct {
	busy, steal time.Duration // busy: user, nice, system, irq, softirq
}

func readHostCPU() (hostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return hostCPU{}, errors.New("malformed /proc/stat")
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return hostCPU{}, err
		}
	}
	tick := func(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	// user nice system idle iowait irq softirq steal
	return hostCPU{busy: tick(v[0] + v[1] + v[2] + v[5] + v[6]), steal: tick(v[7])}, nil
}
