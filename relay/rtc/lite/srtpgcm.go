package lite

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// SRTP sealing for the AEAD_AES_128_GCM profile (RFC 7714) without pion's
// per-packet work. pion/srtp's Context.EncryptRTP unmarshals the header it
// is given, looks the SSRC up in a map under a mutex and asks the profile
// for its lengths on every packet: about a third of the cost of sealing a
// viewer's packet. The peer already holds its write lock and has the
// header's length in hand, so the sealer keeps what that needs in the Peer:
// one AEAD, the session salt, and the rollover state of the few SSRCs a
// viewer is sent. pion keeps doing everything else (the AES-CM profile,
// SRTCP, decryption).

const (
	gcmKeyLen  = 16 // RFC 7714 section 12: AEAD_AES_128_GCM master and session key
	gcmSaltLen = 12 // master and session salt
	gcmTagLen  = 16

	// gcmStreams is how many SSRCs the sealer keeps state for: a viewer
	// is sent one media SSRC per section and, for video, an RTX SSRC that
	// carries probes. An SSRC seen after these are taken is sealed by pion
	// for the whole session (the sealer never evicts, so an SSRC's packets
	// always get their rollover counter from the same place).
	gcmStreams = 8
)

// SRTP key derivation labels (RFC 3711 section 4.3.1).
const (
	labelRTPCipherKey = 0x00
	labelRTPSalt      = 0x02
)

var errSRTPIndexExhausted = errors.New("lite: SRTP packet index exhausted (2^48 packets on one SSRC)")

// gcmStream is the sender's rollover state of one SSRC: index is the
// highest packet index sealed so far, ROC<<16 | SEQ (RFC 3711 section
// 3.3.1).
type gcmStream struct {
	ssrc    uint32
	index   uint64
	started bool
}

// gcmSealer seals RTP packets of one peer. Not safe for concurrent use:
// the peer calls it under wmu.
type gcmSealer struct {
	aead cipher.AEAD
	salt [gcmSaltLen]byte
	// iv lives here, not on the stack: a slice handed to the AEAD's
	// interface method escapes, and would cost an allocation per packet.
	iv [gcmSaltLen]byte

	streams [gcmStreams]gcmStream
	n       int // streams in use
	last    int // the stream the previous packet used: usually the next's
}

// newGCMSealer derives the SRTP session key and salt from the DTLS-exported
// master key and salt (RFC 3711 section 4.3.3, AES-CM PRF, key derivation
// rate 0; RFC 7714 section 11 for the 96-bit salt).
func newGCMSealer(masterKey, masterSalt []byte) (*gcmSealer, error) {
	if len(masterKey) != gcmKeyLen || len(masterSalt) != gcmSaltLen {
		return nil, fmt.Errorf("lite: AES-GCM SRTP wants a %d-byte master key and %d-byte salt, got %d and %d",
			gcmKeyLen, gcmSaltLen, len(masterKey), len(masterSalt))
	}
	prf, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("lite: SRTP master key: %w", err)
	}
	s := &gcmSealer{}
	var key [gcmKeyLen]byte
	srtpKDF(prf, masterSalt, labelRTPCipherKey, key[:])
	srtpKDF(prf, masterSalt, labelRTPSalt, s.salt[:])
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("lite: SRTP session key: %w", err)
	}
	if s.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("lite: SRTP AEAD: %w", err)
	}
	return s, nil
}

// srtpKDF fills out with the AES-CM PRF's keystream for label: the
// counter block is the master salt, left-aligned in 14 bytes (the 96-bit
// salt padded with zeros), XORed with label || (index DIV kdr) aligned to
// its right end, where kdr is 0 so the 48 index bits are zero: the label
// lands in byte 7. The last two bytes count the AES blocks.
func srtpKDF(prf cipher.Block, masterSalt []byte, label byte, out []byte) {
	var in, ks [aes.BlockSize]byte
	copy(in[:14], masterSalt)
	in[7] ^= label
	for i := 0; i*aes.BlockSize < len(out); i++ {
		binary.BigEndian.PutUint16(in[14:], uint16(i))
		prf.Encrypt(ks[:], in[:])
		copy(out[i*aes.BlockSize:], ks[:])
	}
}

// stream returns ssrc's state, taking a free one for a new SSRC, or nil
// when all are taken by others.
func (s *gcmSealer) stream(ssrc uint32) *gcmStream {
	if st := &s.streams[s.last]; s.last < s.n && st.ssrc == ssrc {
		return st
	}
	for i := range s.n {
		if s.streams[i].ssrc == ssrc {
			s.last = i
			return &s.streams[i]
		}
	}
	if s.n == gcmStreams {
		return nil
	}
	s.last = s.n
	s.n++
	s.streams[s.last] = gcmStream{ssrc: ssrc}
	return &s.streams[s.last]
}

// rollover returns the ROC to seal sequence number seq with, and how far
// it moves the stream's highest index (0 for an old packet). It estimates
// as pion/srtp's sender does (RFC 3711 section 3.3.1 / appendix A): a
// number within half the sequence space behind the highest one sealed is
// an old packet of the ROC it was sent with (before a wrap, the previous
// ROC), one ahead is new (past a wrap, the next ROC). While the index is
// at most 2^15, nothing counts as before ROC 0.
func (st *gcmStream) rollover(seq uint16) (roc uint32, advance int64) {
	if !st.started {
		return 0, 0
	}
	const half = 1 << 15
	localROC := uint32(st.index >> 16)
	localSeq := int64(st.index & 0xffff)
	d := int64(seq) - localSeq
	switch {
	case st.index <= half:
	case localSeq < half && d > half:
		return localROC - 1, d - 1<<16
	case localSeq >= half && d < -half:
		return localROC + 1, d + 1<<16
	}
	return localROC, d
}

// seal encrypts the RTP packet pkt in place: its first hdrLen bytes are
// the header (with CSRCs and extensions), which is authenticated, the rest
// the payload (with any padding), which is encrypted; the 16-byte tag is
// appended within pkt's capacity. ok is false when the sealer keeps no
// state for ssrc: the caller seals with pion instead.
//
// The IV (RFC 7714 section 8.1) is 00 00 || SSRC || ROC || SEQ XOR the
// session salt, so it repeats exactly when (SSRC, ROC, SEQ) does. In the
// lite transport that happens only for a NACK answer, which re-sends a
// packet from the shared history under the number the viewer knew it by
// (relay.Reader.Retransmit), and gets the ROC it was first sent with (the
// estimate below). Nothing else goes backwards: a reader's numbering
// continues from its last number across keyframe resyncs and publisher
// reconnects (relay.Reader.send, relay.Track), NACKs are answered only for
// numbers after the reader's last resync, probes take fresh numbers on
// their own RTX SSRC (probe.go), and each section has its own SSRCs. A
// jump of more than half the sequence space, which the estimate would take
// for an old packet of the previous ROC, is never produced.
//
// A NACK answer is not the same bytes, though, when transport-cc is on:
// it carries a new transport sequence number in its header, so the same
// IV seals the same payload (the same ciphertext: nothing new about the
// payload leaks) under different additional data. Two GCM tags under one
// IV over different additional data give away the authentication key
// (H), with which an on-path attacker can alter later packets of this
// session undetected. So a viewer with transport-cc gets its NACK answers
// on its RTX stream with fresh numbers (Peer.WriteRTX, RFC 4588), and a
// section of such a viewer without an RTX stream is offered no NACK and
// answers none (egress/whep liteSection.canResend); a viewer without
// transport-cc gets the original's header and payload byte for byte, the
// same sealed bytes again.
func (s *gcmSealer) seal(pkt []byte, hdrLen int, ssrc uint32, seq uint16) (out []byte, ok bool, err error) {
	st := s.stream(ssrc)
	if st == nil {
		return nil, false, nil
	}
	if hdrLen < 12 || hdrLen > len(pkt) {
		return nil, true, fmt.Errorf("lite: RTP header of %d bytes in a %d-byte packet", hdrLen, len(pkt))
	}
	if cap(pkt)-len(pkt) < gcmTagLen {
		return nil, true, errors.New("lite: no room for the SRTP tag")
	}
	roc, advance := st.rollover(seq)
	if roc == 0 && st.started && st.index>>16 == 0xffffffff {
		// RFC 3711 section 9.2: the key must not seal more.
		return nil, true, errSRTPIndexExhausted
	}
	switch {
	case !st.started:
		st.index, st.started = uint64(seq), true
	case advance > 0:
		st.index += uint64(advance)
	}
	iv := &s.iv
	*iv = s.salt
	iv[2] ^= byte(ssrc >> 24)
	iv[3] ^= byte(ssrc >> 16)
	iv[4] ^= byte(ssrc >> 8)
	iv[5] ^= byte(ssrc)
	iv[6] ^= byte(roc >> 24)
	iv[7] ^= byte(roc >> 16)
	iv[8] ^= byte(roc >> 8)
	iv[9] ^= byte(roc)
	iv[10] ^= byte(seq >> 8)
	iv[11] ^= byte(seq)
	// dst is the payload's own storage (payload[:0]), which the AEAD
	// allows; the header before it is only read.
	sealed := s.aead.Seal(pkt[hdrLen:hdrLen], iv[:], pkt[hdrLen:], pkt[:hdrLen])
	return pkt[:hdrLen+len(sealed)], true, nil
}
