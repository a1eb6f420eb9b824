package segmenter

// The depacketizers live in relay/frames, shared with the other frame
// readers (HLS, RTMP push); the segmenter only needs to notice losses.

// seqTracker detects sequence gaps.
type seqTracker struct {
	last uint16
	ok   bool
}

func (s *seqTracker) gap(seq uint16) bool {
	g := s.ok && seq != s.last+1
	s.last, s.ok = seq, true
	return g
}
