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
