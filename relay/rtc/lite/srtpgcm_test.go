package lite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

func gcmKeys(rng *rand.Rand) (key, salt []byte) {
	key, salt = make([]byte, gcmKeyLen), make([]byte, gcmSaltLen)
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	for i := range salt {
		salt[i] = byte(rng.Uint32())
	}
	return key, salt
}

func pionGCM(t testing.TB, key, salt []byte, opts ...srtp.ContextOption) *srtp.Context {
	t.Helper()
	c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testPacket is an RTP packet as the peer builds it: header and payload.
type testPacket struct {
	h       rtp.Header
	payload []byte
}

// randPacket makes a packet with what the relay can send: CSRCs or not,
// one-byte or two-byte extensions (transport-cc is a one-byte one) or
// none, the padding bit with a valid padding tail, any size.
func randPacket(rng *rand.Rand, ssrc uint32, seq uint16) testPacket {
	h := rtp.Header{Version: 2, Marker: rng.IntN(4) == 0, PayloadType: uint8(96 + rng.IntN(32)),
		SequenceNumber: seq, Timestamp: rng.Uint32(), SSRC: ssrc}
	for range rng.IntN(4) {
		h.CSRC = append(h.CSRC, rng.Uint32())
	}
	switch rng.IntN(4) {
	case 1:
		var twcc [2]byte
		binary.BigEndian.PutUint16(twcc[:], uint16(rng.Uint32()))
		_ = h.SetExtension(uint8(1+rng.IntN(14)), twcc[:])
	case 2:
		h.Extension, h.ExtensionProfile = true, rtp.ExtensionProfileTwoByte
		_ = h.SetExtension(uint8(1+rng.IntN(200)), bytes.Repeat([]byte{byte(rng.Uint32())}, 1+rng.IntN(20)))
	case 3:
		_ = h.SetExtension(3, []byte{1, 2})
		_ = h.SetExtension(5, []byte{9, 8, 7})
	}
	size := rng.IntN(300)
	if rng.IntN(8) == 0 {
		size = 1100
	}
	payload := make([]byte, size+1)
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	if rng.IntN(5) == 0 {
		h.Padding = true
		pad := 1 + rng.IntN(min(len(payload), 255))
		payload[len(payload)-1] = byte(pad)
	}
	return testPacket{h: h, payload: payload}
}

// plain is the packet's unencrypted bytes.
func (p *testPacket) plain(t testing.TB) []byte {
	t.Helper()
	b, err := p.h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, p.payload...)
}

// sealWith seals p as the peer does: header and payload written into a
// slot with the transport's headroom, encrypted in place.
func sealWith(t testing.TB, s *gcmSealer, p *testPacket) []byte {
	t.Helper()
	n := p.h.MarshalSize()
	slot := make([]byte, n+len(p.payload), n+len(p.payload)+32)
	if _, err := p.h.MarshalTo(slot); err != nil {
		t.Fatal(err)
	}
	copy(slot[n:], p.payload)
	out, ok, err := s.seal(slot, n, p.h.SSRC, p.h.SequenceNumber)
	if !ok || err != nil {
		t.Fatalf("seal ssrc %x seq %d: ok %v, %v", p.h.SSRC, p.h.SequenceNumber, ok, err)
	}
	if &out[0] != &slot[0] {
		t.Fatal("sealed output left the slot")
	}
	return out
}

// The sealer's packets are pion's, byte for byte, over long runs of
// several SSRCs that cross 65535 -> 0, with NACK answers (old numbers,
// from before and after the wrap) mixed in; pion's receiving side opens
// every one of them, and an answer is the very datagram first sent.
func TestGCMSealMatchesPion(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 7))
	trials, run := 6, 5000
	if testing.Short() {
		trials = 2
	}
	for trial := range trials {
		if trial == trials-1 {
			run = 70000 // about 20,000 new packets per SSRC
		}
		key, salt := gcmKeys(rng)
		ours, err := newGCMSealer(key, salt)
		if err != nil {
			t.Fatal(err)
		}
		ref := pionGCM(t, key, salt)
		dec := pionGCM(t, key, salt, srtp.SRTPNoReplayProtection())
		type stream struct {
			ssrc uint32
			next uint16
			sent []testPacket
			wire [][]byte
		}
		streams := []*stream{
			{ssrc: rng.Uint32(), next: uint16(65535 - rng.IntN(1000))},
			{ssrc: rng.Uint32(), next: uint16(65535 - rng.IntN(100))},
			{ssrc: rng.Uint32(), next: uint16(rng.Uint32())},
		}
		if trial == 0 {
			streams[0].next, streams[1].next = 65535, 65533
		}
		resent, afterWrap := 0, 0
		for i := 0; i < run; i++ {
			st := streams[rng.IntN(len(streams))]
			var p testPacket
			var first []byte
			if len(st.sent) > 0 && rng.IntN(10) == 0 {
				back := 1 + rng.IntN(min(len(st.sent), 3000))
				p, first = st.sent[len(st.sent)-back], st.wire[len(st.wire)-back]
				resent++
				if p.h.SequenceNumber > st.next {
					afterWrap++ // sent before the wrap, answered after it
				}
			} else {
				p = randPacket(rng, st.ssrc, st.next)
				st.next++
			}
			plain := p.plain(t)
			got := sealWith(t, ours, &p)
			want, err := ref.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("trial %d packet %d (ssrc %x seq %d, resent %v): sealed\n%x\npion\n%x",
					trial, i, p.h.SSRC, p.h.SequenceNumber, first != nil, got, want)
			}
			if first != nil && !bytes.Equal(got, first) {
				t.Fatalf("trial %d: answer to a NACK for seq %d differs from the packet first sent", trial, p.h.SequenceNumber)
			}
			opened, err := dec.DecryptRTP(nil, got, nil)
			if err != nil {
				t.Fatalf("trial %d packet %d (seq %d): pion cannot open it: %v", trial, i, p.h.SequenceNumber, err)
			}
			if !bytes.Equal(opened, plain) {
				t.Fatalf("trial %d packet %d: opened to different bytes", trial, i)
			}
			if first == nil {
				st.sent, st.wire = append(st.sent, p), append(st.wire, got)
				if len(st.sent) > 4000 {
					st.sent, st.wire = st.sent[1000:], st.wire[1000:]
				}
			}
		}
		for _, st := range streams[:2] {
			if roc, _ := ref.ROC(st.ssrc); roc != 1 {
				t.Fatalf("trial %d: ssrc %x at ROC %d, the run was meant to cross one wrap", trial, st.ssrc, roc)
			}
		}
		if resent < run/20 || afterWrap == 0 {
			t.Fatalf("trial %d: %d NACK answers, %d of them across the wrap: the run tests too little",
				trial, resent, afterWrap)
		}
	}
}

// The rollover counter follows pion's estimate even where numbering jumps
// (half the sequence space either way, and around it), which the lite
// transport never produces but whose ROC must still be pion's.
func TestGCMRolloverMatchesPion(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 11))
	for trial := range 20 {
		key, salt := gcmKeys(rng)
		ours, err := newGCMSealer(key, salt)
		if err != nil {
			t.Fatal(err)
		}
		ref := pionGCM(t, key, salt)
		ssrc := rng.Uint32()
		seq := []uint16{0, 1, 32767, 32768, 32769, 65535, uint16(rng.Uint32())}[trial%7]
		for i := range 3000 {
			switch r := rng.IntN(100); {
			case r < 70:
				seq++
			case r < 80:
				seq -= uint16(1 + rng.IntN(100))
			case r < 95:
				seq += []uint16{32767, 32768, 32769, 65535 - 32767, 65535 - 32768, 65535 - 32769, 40000}[rng.IntN(7)]
			default:
				seq = uint16(rng.Uint32())
			}
			p := testPacket{h: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, SSRC: ssrc},
				payload: []byte{byte(i), byte(i >> 8)}}
			got := sealWith(t, ours, &p)
			want, err := ref.EncryptRTP(nil, p.plain(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				pionROC, _ := ref.ROC(ssrc)
				t.Fatalf("trial %d step %d seq %d: differs from pion (pion's ROC now %d, ours %d)",
					trial, i, seq, pionROC, ours.stream(ssrc).index>>16)
			}
		}
	}
}

// At the last index of an SSRC both refuse to seal more (RFC 3711 9.2)
// rather than wrap the ROC to 0 and repeat IVs.
func TestGCMSealIndexExhausted(t *testing.T) {
	key, salt := gcmKeys(rand.New(rand.NewPCG(1, 2)))
	ours, err := newGCMSealer(key, salt)
	if err != nil {
		t.Fatal(err)
	}
	ref := pionGCM(t, key, salt)
	const ssrc = 0x1234
	ref.SetROC(ssrc, 0xffffffff)
	p := testPacket{h: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 65534, SSRC: ssrc}, payload: []byte{1}}
	if _, err := ref.EncryptRTP(nil, p.plain(t), nil); err != nil {
		t.Fatal(err)
	}
	*ours.stream(ssrc) = gcmStream{ssrc: ssrc, index: 0xffffffff<<16 | 65534, started: true}
	p.h.SequenceNumber = 65535
	want, err := ref.EncryptRTP(nil, p.plain(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := sealWith(t, ours, &p); !bytes.Equal(got, want) {
		t.Fatal("the last index sealed differently from pion")
	}
	p.h.SequenceNumber = 0
	if _, err := ref.EncryptRTP(nil, p.plain(t), nil); err == nil {
		t.Fatal("pion sealed past the last index: the test's premise is wrong")
	}
	slot := make([]byte, 13, 64)
	if _, ok, err := ours.seal(slot, 12, ssrc, 0); !ok || err == nil {
		t.Fatalf("sealed past the last index: ok %v err %v", ok, err)
	}
}

func TestGCMSealerRejectsBadInput(t *testing.T) {
	if _, err := newGCMSealer(make([]byte, 16), make([]byte, 14)); err == nil {
		t.Fatal("a 14-byte (AES-CM) salt was taken")
	}
	if _, err := newGCMSealer(make([]byte, 32), make([]byte, 12)); err == nil {
		t.Fatal("a 32-byte key was taken for AES-128-GCM")
	}
	s, err := newGCMSealer(make([]byte, 16), make([]byte, 12))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.seal(make([]byte, 100, 110), 12, 1, 1); !ok || err == nil {
		t.Fatal("sealed without room for the tag")
	}
	if _, ok, err := s.seal(make([]byte, 10, 64), 12, 1, 1); !ok || err == nil {
		t.Fatal("sealed a header longer than the packet")
	}
}

// The peer's seal (transport-cc stamp, marshal, encrypt) gives what pion
// gives for the same stamped packet, allocates nothing, and leaves SSRCs
// beyond the sealer's table to pion with the same result.
func TestPeerSealGCM(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	key, salt := gcmKeys(rng)
	gcm, err := newGCMSealer(key, salt)
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{out: pionGCM(t, key, salt), gcm: gcm, cc: newCC(CC{ExtID: 3})}
	ref := pionGCM(t, key, salt)
	dec := pionGCM(t, key, salt)
	slot := make([]byte, 0, slotSize)
	var twcc uint16
	for i := range 3000 {
		ssrc := uint32(1000 + i%(gcmStreams+2)) // two more SSRCs than the table holds
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(65000 + i/(gcmStreams+2)),
			Timestamp: uint32(i), SSRC: ssrc}
		payload := make([]byte, 1100)
		payload[0], payload[1] = byte(i), byte(i>>8)
		p.wmu.Lock()
		got, err := p.seal(slot, &h, payload)
		p.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		plain, err := dec.DecryptRTP(nil, got, nil)
		if err != nil {
			t.Fatalf("packet %d (ssrc %d): %v", i, ssrc, err)
		}
		var back rtp.Packet
		if err := back.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		if back.SSRC != ssrc || back.SequenceNumber != h.SequenceNumber || !bytes.Equal(back.Payload, payload) {
			t.Fatalf("packet %d opened as ssrc %d seq %d", i, back.SSRC, back.SequenceNumber)
		}
		if ext := back.GetExtension(3); len(ext) != 2 || binary.BigEndian.Uint16(ext) != twcc {
			t.Fatalf("packet %d: transport-cc %v, want %d", i, ext, twcc)
		}
		twcc++
		want, err := ref.EncryptRTP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("packet %d (ssrc %d) differs from pion's", i, ssrc)
		}
	}
	if gcm.n != gcmStreams {
		t.Fatalf("%d streams kept, want %d", gcm.n, gcmStreams)
	}
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, SSRC: 1000}
	payload := make([]byte, 1100)
	allocs := testing.AllocsPerRun(1000, func() {
		h.SequenceNumber++
		if _, err := p.seal(slot, &h, payload); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("sealing a packet allocates %v times", allocs)
	}
}

// mediaConn is a viewer's socket: DTLS to its client, SRTP to media.
type mediaConn struct {
	*net.UDPConn
	media chan []byte
}

func (c *mediaConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, err := c.Read(b)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case n > 0 && b[0] >= 20 && b[0] <= 63:
			return n, c.RemoteAddr(), nil
		case n > 1 && b[0] >= 128 && b[0] <= 191:
			select {
			case c.media <- append([]byte(nil), b[:n]...):
			default:
			}
		}
	}
}

func (c *mediaConn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

// connectMedia connects a viewer offering one SRTP profile, with
// transport-cc on extension 3, and returns the peer, what the viewer
// receives and the viewer's context for the peer's packets.
func connectMedia(t *testing.T, r *rig, prof dtls.SRTPProtectionProfile) (*Peer, chan []byte, *srtp.Context) {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	connected := make(chan struct{})
	p, err := r.tr.NewPeer(PeerParams{
		RemoteUfrag: "cli", RemotePwd: "clientpasswordclientpass", Fingerprints: []string{"sha-256 " + colonHex(sum[:])},
		OnConnected: func() { close(connected) },
		CC:          CC{ExtID: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ufrag, pwd := p.LocalCredentials()
	conn := &mediaConn{UDPConn: r.client(), media: make(chan []byte, 256)}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write(bindingRequest(t, ufrag+":cli", pwd, true).Raw); err != nil {
		t.Fatal(err)
	}
	dc, err := dtls.Client(conn, conn.RemoteAddr(), &dtls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{prof},
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	state, ok := dc.ConnectionState()
	if !ok {
		t.Fatal("no client state")
	}
	profile := srtp.ProtectionProfileAeadAes128Gcm
	if prof == dtls.SRTP_AES128_CM_HMAC_SHA1_80 {
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		t.Fatal(err)
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		t.Fatal("peer not connected")
	}
	return p, conn.media, in
}

// A viewer's DTLS-derived keys open what the peer sends through the
// worker's batch and the NACK path, across a sequence wrap, including a
// retransmission after the wrap of a packet lost before it; with the
// AES-CM profile pion still seals.
func TestViewerOpensSealedMedia(t *testing.T) {
	for _, prof := range []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80} {
		t.Run(fmt.Sprintf("profile-%#x", uint16(prof)), func(t *testing.T) {
			r := newRig(t)
			p, media, in := connectMedia(t, r, prof)
			if (p.gcm != nil) != (prof == dtls.SRTP_AEAD_AES_128_GCM) {
				t.Fatalf("own sealer in use: %v", p.gcm != nil)
			}
			const ssrc = 0xabcdef
			const lost = 65534
			payloadOf := func(seq uint16) []byte { return bytes.Repeat([]byte{byte(seq), byte(seq >> 8)}, 550) }
			recv := func(seq uint16) {
				t.Helper()
				for {
					select {
					case b := <-media:
						plain, err := in.DecryptRTP(nil, b, nil)
						if err != nil {
							t.Fatalf("seq %d: viewer cannot open: %v", seq, err)
						}
						var pk rtp.Packet
						if err := pk.Unmarshal(plain); err != nil {
							t.Fatal(err)
						}
						if pk.SequenceNumber == lost && seq != lost {
							continue // the viewer "lost" it
						}
						if pk.SequenceNumber != seq || pk.SSRC != ssrc || !bytes.Equal(pk.Payload, payloadOf(seq)) {
							t.Fatalf("got ssrc %x seq %d, want seq %d with its payload", pk.SSRC, pk.SequenceNumber, seq)
						}
						if len(pk.GetExtension(3)) != 2 {
							t.Fatal("no transport-cc sequence number")
						}
						return
					case <-time.After(5 * time.Second):
						t.Fatalf("seq %d never arrived", seq)
					}
				}
			}
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc}
			for seq := uint16(65530); seq != 6; seq++ {
				h.SequenceNumber = seq
				if err := p.QueueRTP(0, &h, payloadOf(seq)); err != nil {
					t.Fatal(err)
				}
				r.tr.Flush(0)
				if seq != lost {
					recv(seq)
				} else {
					// Dropped before the viewer's context saw it.
					select {
					case <-media:
					case <-time.After(5 * time.Second):
						t.Fatal("lost packet never sent")
					}
				}
			}
			h.SequenceNumber = lost
			if err := p.WriteRTP(&h, payloadOf(lost)); err != nil {
				t.Fatal(err)
			}
			recv(lost)
		})
	}
}
