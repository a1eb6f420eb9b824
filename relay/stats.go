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

// Stats returns the stream's counters. The bitrates are the ones the hub's
// once-a-second tick measured last: reading them changes nothing, so the
// API, the metrics and the cluster heartbeat see the same figures however
// often each of them asks.
func (s *Stream) Stats() StreamStats {
	s.mu.Lock()
	st := StreamStats{Path: s.path, Live: s.pub != nil, StartedAt: s.created}
	tracks := append([]*Track(nil), s.tracks...)
	s.mu.Unlock()
	st.Readers = s.viewers.Load()
	for _, t := range tracks {
		st.Tracks = append(st.Tracks, t.stats())
	}
	st.Uptime = time.Since(s.created).Seconds()
	s.rateMu.Lock()
	st.BitrateIn, st.BitrateOut = s.lastRate[0], s.lastRate[1]
	s.rateMu.Unlock()
	return st
}

// measureRates sets the stream's bitrates from the bytes in and out since
// the previous measurement (or since the stream began). Only the hub's
// tick calls it.
func (s *Stream) measureRates(now time.Time) {
	var in, out uint64
	for _, t := range s.Tracks() {
		i, o := t.layerByteCounts(t.byteCounts())
		in += i
		out += o
	}
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if s.rateAt.IsZero() {
		s.rateAt = s.created
	}
	// A reader leaving between the loads above can count its bytes twice
	// for a moment; a total lower than the last one is skipped, not
	// turned into a wrapped-around rate.
	if dt := now.Sub(s.rateAt).Seconds(); dt > 0 && in >= s.rateIn && out >= s.rateOut {
		s.lastRate = [2]float64{float64(in-s.rateIn) * 8 / dt, float64(out-s.rateOut) * 8 / dt}
		s.rateAt, s.rateIn, s.rateOut = now, in, out
	}
}
