package mediain

import (
	"sync"
	"time"

	"github.com/livegate/livegate/relay"
)

// SenderReports sends RTCP-style sender reports for a publisher whose
// tracks share one media timeline (RTMP, or RTSP with one clock per
// stream), so that WebRTC viewers can line audio up with video. The wall
// clock of media time 0 is fixed at the first report.
type SenderReports struct {
	mu    sync.Mutex
	start time.Time
	last  map[int]time.Time
}

// Maybe reports, at most once a second per track, that media time pts of
// track i is RTP time ts.
func (s *SenderReports) Maybe(pub *relay.Publication, i int, pts time.Duration, ts uint32) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[int]time.Time{}
		s.start = now.Add(-pts)
	}
	if now.Sub(s.last[i]) < time.Second {
		return
	}
	s.last[i] = now
	pub.WriteSenderReport(i, NTP(s.start.Add(pts)), ts)
}

// NTP is t as a 64-bit NTP timestamp.
func NTP(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := uint64(ns%1e9) << 32 / 1e9
	return sec<<32 | frac
}

// OpusClock times the Opus packets of an AAC->Opus transcoder on the
// publisher's media timeline: the first AAC frame's time plus the 48 kHz
// samples that came out before. The read loop calls Start, the
// transcoder's goroutine Next.
type OpusClock struct {
	mu      sync.Mutex
	first   time.Duration
	started bool
	samples int64
}

// Start notes the time of the first AAC frame; later calls do nothing.
func (c *OpusClock) Start(pts time.Duration) {
	c.mu.Lock()
	if !c.started {
		c.first, c.started = pts, true
	}
	c.mu.Unlock()
}

// Next is the media time and 48 kHz RTP time of the next Opus packet,
// which holds n samples.
func (c *OpusClock) Next(n int64) (time.Duration, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pts := c.first + time.Duration(c.samples)*time.Second/48000
	c.samples += n
	return pts, uint32(pts * 48000 / time.Second)
}
