package relay

import "time"

// StreamStats is a snapshot of a stream for the API.
type StreamStats struct {
	Path       string       `json:"path"`
	Live       bool         `json:"live"`
	Readers    int64        `json:"viewers"`
	Tracks     []TrackStats `json:"tracks"`
	BitrateIn  float64      `json:"bitrateIn"`
	BitrateOut float64      `json:"bitrateOut"`
	Uptime     float64      `json:"uptimeSeconds"`
	StartedAt  time.Time    `json:"startedAt"`
}

// Stats returns the stream's counters. Bitrates are averaged over the time
// since the previous call (at least one second) or since the stream began.
func (s *Stream) Stats() StreamStats {
	s.mu.Lock()
	st := StreamStats{Path: s.path, Live: s.pub != nil, StartedAt: s.created}
	tracks := append([]*Track(nil), s.tracks...)
	s.mu.Unlock()
	st.Readers = s.viewers.Load()
	var in, out uint64
	for _, t := range tracks {
		ts := t.stats()
		in += ts.BytesIn
		out += ts.BytesOut
		st.Tracks = append(st.Tracks, ts)
	}
	now := time.Now()
	st.Uptime = now.Sub(s.created).Seconds()

	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if s.rateAt.IsZero() {
		s.rateAt = s.created
	}
	if dt := now.Sub(s.rateAt).Seconds(); dt >= 1 {
		s.lastRate = [2]float64{float64(in-s.rateIn) * 8 / dt, float64(out-s.rateOut) * 8 / dt}
		s.rateAt, s.rateIn, s.rateOut = now, in, out
	}
	st.BitrateIn, st.BitrateOut = s.lastRate[0], s.lastRate[1]
	return st
}
