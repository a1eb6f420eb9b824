package codec

// SeqTracker notices gaps in an RTP stream's sequence numbers, so that a
// depacketiser drops a frame that lost a packet instead of emitting it
// corrupt. The zero value is ready; it is used by one goroutine.
type SeqTracker struct {
	last uint16
	ok   bool
}

// Gap records seq and reports whether packets were missing (or reordered)
// since the previous one. The first packet is never a gap.
func (s *SeqTracker) Gap(seq uint16) bool {
	g := s.ok && seq != s.last+1
	s.last, s.ok = seq, true
	return g
}
