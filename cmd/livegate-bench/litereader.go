package main

// The light viewer's receive path: one reader goroutine per viewer
// demultiplexes its socket (STUN, DTLS, SRTP/SRTCP), answers the server's
// checks, and sends receiver reports and NACKs.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"golang.org/x/net/ipv4"
)

// liteTestDrop, set by tests only, drops video packets (viewer, sequence
// number) as the network would, before decryption.
var liteTestDrop func(viewer int, seq uint16) bool

// liteReader is the reader goroutine's own state.
type liteReader struct {
	c        *liteConn
	h        rtp.Header
	video    videoRx
	vSSRC    uint32
	aSSRC    uint32
	haveV    bool
	haveA    bool
	stun     stun.Message
	nacks    []nackEntry
	early    []earlyPacket // media that arrived before the keys
	nackSeqs []uint16
	// Receiver report state: expected and received at the last report.
	lastExp, lastRecv [2]uint64
	lastReport        time.Time
	lastConsent       time.Time
	nextTick          time.Time
}

type earlyPacket struct {
	p  []byte
	at time.Time
}

type nackEntry struct {
	seq   uint16
	tries uint8
}

// readLoop reads the socket until it is closed: STUN, DTLS (to the
// handshake's queue), SRTP and SRTCP, by first byte (RFC 7983).
func (c *liteConn) readLoop() {
	r := &liteReader{c: c}
	msgs := make([]ipv4.Message, liteBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, liteBufSize)}
		if rxOOBSize > 0 {
			msgs[i].OOB = make([]byte, rxOOBSize)
		}
	}
	counts := &c.v.b.lite
	errorsInARow := 0
	for {
		n, err := c.bpc.ReadBatch(msgs, 0)
		now := time.Now()
		if err != nil {
			if c.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				// Transient errors (an ICMP report, an interrupted
				// call) are retried; a socket that only fails is not.
				if errorsInARow++; errorsInARow > 100 {
					return
				}
				continue
			}
		} else {
			errorsInARow = 0
			c.lastRx.Store(now.UnixNano())
		}
		for i := range n {
			m := &msgs[i]
			if m.Flags&syscall.MSG_TRUNC != 0 || m.N == 0 {
				counts.bad.Add(1)
				continue
			}
			at := now
			if c.kernelTS {
				if ts, ok := rxTimestamp(m.OOB[:m.NN]); ok {
					at = ts
				} else {
					counts.readTS.Add(1)
				}
			} else {
				counts.readTS.Add(1)
			}
			from := addrPort(m.Addr)
			r.datagram(m.Buffers[0][:m.N], from, at)
		}
		if !now.Before(r.nextTick) {
			r.tick(now)
			r.nextTick = now.Add(liteTick)
			_ = c.sock.SetReadDeadline(r.nextTick)
		}
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (r *liteReader) datagram(p []byte, from netip.AddrPort, at time.Time) {
	c := r.c
	counts := &c.v.b.lite
	switch b0 := p[0]; {
	case b0 < 4:
		r.onSTUN(p, from)
	case b0 >= 20 && b0 < 64:
		c.dtlsPC.push(p)
	case b0 >= 128 && b0 < 192:
		if len(p) < 12 {
			counts.bad.Add(1)
			return
		}
		if pt := p[1]; pt >= 192 && pt <= 223 {
			return // SRTCP (sender reports): not needed
		}
		r.onRTP(p, at)
	default:
		counts.bad.Add(1)
	}
}

func (r *liteReader) onRTP(p []byte, at time.Time) {
	c := r.c
	counts := &c.v.b.lite
	rx := c.rx.Load()
	if rx == nil {
		// The server's media can overtake the end of the handshake on
		// the client's side: keep it (bounded) for when the keys are set,
		// or the first keyframe would be cut.
		if len(r.early) < liteEarlyMax {
			r.early = append(r.early, earlyPacket{p: bytes.Clone(p), at: at})
		} else {
			counts.early.Add(1)
		}
		return
	}
	r.flushEarly(rx)
	r.decrypt(rx, p, at)
}

// flushEarly handles the media kept from before the keys, in order.
func (r *liteReader) flushEarly(rx *srtp.Context) {
	if r.early == nil {
		return
	}
	early := r.early
	r.early = nil
	for _, e := range early {
		r.decrypt(rx, e.p, e.at)
	}
}

func (r *liteReader) decrypt(rx *srtp.Context, p []byte, at time.Time) {
	c := r.c
	counts := &c.v.b.lite
	a := c.ans.Load()
	hn, ok := rtpHeaderLen(p)
	if !ok {
		counts.bad.Add(1)
		return
	}
	if liteTestDrop != nil && int(p[1]&0x7f) == a.videoPT && liteTestDrop(c.v.id, binary.BigEndian.Uint16(p[2:])) {
		return
	}
	// In place: the buffer is the reader's and is reused after this.
	out, err := rx.DecryptRTP(p, p, &r.h)
	if err != nil || hn > len(out) {
		counts.srtp.Add(1)
		return
	}
	switch int(r.h.PayloadType) {
	case a.videoPT:
		r.vSSRC, r.haveV = r.h.SSRC, true
		gap := c.v.onVideo(&r.video, &r.h, rtpPayload(out, &r.h, hn), at)
		if gap > 0 && c.v.b.cfg.nack {
			r.addNACKs(r.h.SequenceNumber, gap)
		}
	case a.audioPT:
		r.aSSRC, r.haveA = r.h.SSRC, true
		c.v.onAudio(&r.h)
	default:
		counts.bad.Add(1)
	}
}

// rtpHeaderLen is the length of an RTP packet's header (fixed part,
// CSRCs, extension), false if the packet is shorter.
func rtpHeaderLen(p []byte) (int, bool) {
	if len(p) < 12 {
		return 0, false
	}
	n := 12 + 4*int(p[0]&0x0f)
	if p[0]&0x10 != 0 {
		if len(p) < n+4 {
			return 0, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(p[n+2:]))
	}
	return n, n <= len(p)
}

// addNACKs records the gap before seq for repair, bounded: when the list
// is full the oldest go first.
func (r *liteReader) addNACKs(seq uint16, gap int) {
	gap = min(gap, liteMaxNACKs)
	for i := gap; i >= 1; i-- {
		if len(r.nacks) == liteMaxNACKs {
			r.nacks = r.nacks[:copy(r.nacks, r.nacks[1:])]
		}
		r.nacks = append(r.nacks, nackEntry{seq: seq - uint16(i)})
	}
}

// onSTUN handles the server's checks (answered with the local password)
// and the answers to the client's own (checked with the remote one).
func (r *liteReader) onSTUN(p []byte, from netip.AddrPort) {
	c := r.c
	m := &r.stun
	m.Raw = append(m.Raw[:0], p...)
	if err := m.Decode(); err != nil {
		c.v.b.lite.bad.Add(1)
		return
	}
	switch m.Type {
	case stun.BindingRequest:
		var user stun.Username
		if err := user.GetFrom(m); err != nil || !strings.HasPrefix(string(user), c.localUfrag+":") {
			return
		}
		if err := stun.NewShortTermIntegrity(c.localPwd).Check(m); err != nil {
			return
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
			stun.NewShortTermIntegrity(c.localPwd), stun.Fingerprint)
		if err == nil {
			_, _ = c.sock.WriteToUDPAddrPort(resp.Raw, from)
		}
	case stun.BindingSuccess:
		a := c.ans.Load()
		if a == nil {
			return
		}
		if err := stun.NewShortTermIntegrity(a.pwd).Check(m); err != nil {
			return
		}
		c.iceOnce.Do(func() {
			c.remote.Store(&from)
			close(c.iceOK)
		})
	}
}

// tick runs the timers: NACKs for what is still missing, a receiver
// report a second, consent every few seconds.
func (r *liteReader) tick(now time.Time) {
	c := r.c
	if !c.ready.Load() {
		return
	}
	r.flushEarly(c.rx.Load())
	if r.lastReport.IsZero() {
		r.lastReport, r.lastConsent = now, now
	}
	// A compound packet starts with the report; a NACK alone is a
	// reduced-size packet (rtcp-rsize is offered).
	var pkts []rtcp.Packet
	if now.Sub(r.lastReport) >= liteReportInterval {
		r.lastReport = now
		pkts = append(pkts, r.receiverReport())
	}
	if len(r.nacks) > 0 && r.haveV {
		if p := r.nackPacket(); p != nil {
			pkts = append(pkts, p)
		}
	}
	if len(pkts) > 0 {
		c.sendRTCP(pkts)
	}
	if now.Sub(r.lastConsent) >= liteConsent {
		r.lastConsent = now
		if to := c.remote.Load(); to != nil {
			c.sendCheck(c.ans.Load(), *to, false)
		}
	}
}

// nackPacket is a generic NACK for the sequence numbers still missing;
// each is asked for at most liteMaxNACKTries times.
func (r *liteReader) nackPacket() rtcp.Packet {
	v := r.c.v
	r.nackSeqs = r.nackSeqs[:0]
	keep := r.nacks[:0]
	v.mu.Lock()
	for _, e := range r.nacks {
		if v.st.video.has(e.seq) || e.tries >= liteMaxNACKTries {
			continue
		}
		e.tries++
		r.nackSeqs = append(r.nackSeqs, e.seq)
		keep = append(keep, e)
	}
	v.mu.Unlock()
	r.nacks = keep
	if len(r.nackSeqs) == 0 {
		return nil
	}
	v.b.nacked.Add(uint64(len(r.nackSeqs)))
	return &rtcp.TransportLayerNack{SenderSSRC: r.c.ssrc, MediaSSRC: r.vSSRC,
		Nacks: rtcp.NackPairsFromSequenceNumbers(r.nackSeqs)}
}

// receiverReport reports loss per stream from the viewer's own counts.
func (r *liteReader) receiverReport() rtcp.Packet {
	v := r.c.v
	rr := &rtcp.ReceiverReport{SSRC: r.c.ssrc}
	v.mu.Lock()
	for i, s := range []struct {
		have bool
		ssrc uint32
		t    *seqTracker
	}{{r.haveV, r.vSSRC, &v.st.video}, {r.haveA, r.aSSRC, &v.st.audio}} {
		if !s.have || !s.t.started {
			continue
		}
		exp, recv := s.t.expected(), s.t.received
		dExp, dRecv := exp-r.lastExp[i], recv-r.lastRecv[i]
		r.lastExp[i], r.lastRecv[i] = exp, recv
		var frac uint8
		if dExp > dRecv && dExp > 0 {
			frac = uint8(min(255, (dExp-dRecv)*256/dExp))
		}
		rr.Reports = append(rr.Reports, rtcp.ReceptionReport{
			SSRC: s.ssrc, FractionLost: frac, TotalLost: uint32(min(s.t.lost(), 1<<23-1)),
			LastSequenceNumber: uint32(s.t.highest - 1<<16),
		})
	}
	v.mu.Unlock()
	return rr
}
