package lite

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/alert"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
)

// After the handshake a viewer's DTLS association carries nothing but
// alerts: media is SRTP, keyed once. Keeping pion's dtls.Conn for that
// costs three goroutines and its buffers per viewer, so once the viewer
// has shown that it finished the handshake (its first SRTCP), the peer
// keeps only what an alert needs: the association's keys and the next
// record sequence number (dtlsRecords), and drops the Conn (release).
//
// Nonce safety: AES-GCM must never seal two records under one key and
// sequence number. The Conn's packet conn is closed before the sequence
// number is read, and a closed peerConn sends nothing (its close waits for
// a send in progress), so no record of the Conn can follow the snapshot;
// the peer seals at most one record itself, its close_notify.

// dtlsSuites are the cipher suites offered to viewers: the ones whose
// records dtlsRecords can open and seal. RFC 8827 requires every WebRTC
// endpoint to support the first.
var dtlsSuites = []dtls.CipherSuiteID{
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
}

// dtlsSnapshot mirrors the fields of pion/dtls's exported state (State
// MarshalBinary, gob) that the record layer needs; gob matches fields by
// name and skips the rest.
type dtlsSnapshot struct {
	LocalEpoch     uint16
	LocalRandom    [32]byte
	RemoteRandom   [32]byte
	CipherSuiteID  uint16
	MasterSecret   []byte
	SequenceNumber uint64
	IsClient       bool
}

// dtlsRecords is what the peer keeps of a finished DTLS handshake.
type dtlsRecords struct {
	snap dtlsSnapshot
	// canSend: snap.SequenceNumber is still unused (the snapshot was taken
	// after the Conn stopped sending, and no close_notify was sealed).
	canSend bool

	mu           sync.Mutex
	opener       *alertOpener // nil until the viewer's first alert record
	openerFailed bool
}

// snapshotDTLS reads what dtlsRecords needs from c, which must have
// stopped sending. It costs a gob decoding (about 18 KB of garbage): once
// per viewer.
func snapshotDTLS(c *dtls.Conn) (*dtlsRecords, error) {
	st, ok := c.ConnectionState()
	if !ok {
		return nil, errors.New("no DTLS state")
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	r := &dtlsRecords{canSend: true}
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&r.snap); err != nil {
		return nil, fmt.Errorf("dtls state: %w", err)
	}
	if len(r.snap.MasterSecret) != 48 || r.snap.LocalEpoch == 0 || r.snap.IsClient {
		return nil, errors.New("dtls state: not an established server association")
	}
	if _, _, err := suiteParams(dtls.CipherSuiteID(r.snap.CipherSuiteID)); err != nil {
		return nil, err
	}
	return r, nil
}

func suiteSupported(id dtls.CipherSuiteID) bool {
	_, _, err := suiteParams(id)
	return err == nil
}

func suiteParams(id dtls.CipherSuiteID) (keyLen int, h func() hash.Hash, err error) {
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
		return 16, sha256.New, nil
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return 32, sha512.New384, nil
	}
	return 0, nil, fmt.Errorf("dtls: cipher suite %#04x not supported after the handshake", uint16(id))
}

// keys derives the association's record keys (RFC 5246 section 6.3).
func (r *dtlsRecords) keys() (*prf.EncryptionKeys, error) {
	keyLen, h, err := suiteParams(dtls.CipherSuiteID(r.snap.CipherSuiteID))
	if err != nil {
		return nil, err
	}
	return prf.GenerateEncryptionKeys(r.snap.MasterSecret, r.snap.RemoteRandom[:], r.snap.LocalRandom[:], 0, keyLen, 4, h)
}

// cipher builds the association's record protection for sealing; it is
// used once, for our close_notify.
func (r *dtlsRecords) cipher() (*ciphersuite.GCM, error) {
	k, err := r.keys()
	if err != nil {
		return nil, err
	}
	return ciphersuite.NewGCM(k.ServerWriteKey, k.ServerWriteIV, k.ClientWriteKey, k.ClientWriteIV)
}

const (
	recordHeader = 13 // DTLS 1.2 record header without connection ID
	// sealedAlert is the size of an AES-GCM record holding an alert:
	// header, explicit nonce, the 2-byte alert, tag. An alert record of
	// any other size cannot open to one alert (what pion accepts, and
	// all a browser sends), so it is dropped before any work.
	sealedAlert = recordHeader + 8 + 2 + 16
	// alertsPerSecond bounds the alert records opened per peer: anyone
	// who can send from the viewer's address can send forged ones, and
	// they are opened on the goroutine that reads every viewer's and
	// publisher's datagrams. A flood beyond it can only hide the viewer's
	// own close_notify for that second (consent expiry ends the peer).
	alertsPerSecond = 8
)

// alertOpener opens the viewer's alert records: built on the first one
// (most viewers never send any), kept after, so that forged alerts cost
// one AES-GCM open and no allocation.
type alertOpener struct {
	aead   cipher.AEAD
	iv     [4]byte // the viewer's implicit nonce part
	nonce  [12]byte
	ad     [13]byte
	buf    [sealedAlert - recordHeader - 8]byte // ciphertext and tag
	window int64                                // unix second the budget is for
	used   int
}

// viewerEnded reports whether a datagram from the viewer holds an
// authentic alert that ends the association: close_notify or any fatal
// alert. Records that do not open with the association's keys (forged, or
// from before the handshake) are ignored, as is a datagram whose records
// do not frame it exactly (as pion's record layer would).
func (r *dtlsRecords) viewerEnded(datagram []byte) bool {
	if len(datagram) < sealedAlert || !framed(datagram) {
		return false
	}
	for b := datagram; len(b) > 0; {
		n := recordHeader + int(binary.BigEndian.Uint16(b[11:13]))
		rec := b[:n]
		b = b[n:]
		if rec[0] != byte(protocol.ContentTypeAlert) || n != sealedAlert ||
			binary.BigEndian.Uint16(rec[3:5]) != r.snap.LocalEpoch {
			continue
		}
		if r.openAlert(rec) {
			return true
		}
	}
	return false
}

// framed reports whether b is a sequence of whole DTLS records, checked
// as recordlayer.UnpackDatagram does but without allocating.
func framed(b []byte) bool {
	for len(b) > 0 {
		if len(b) <= recordHeader {
			return false
		}
		n := recordHeader + int(binary.BigEndian.Uint16(b[11:13]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// openAlert opens one alert record of the association's epoch and reports
// whether it ends the association. It may be called from the UDP reader
// and an ICE-TCP connection's reader at once.
func (r *dtlsRecords) openAlert(rec []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.opener
	if o == nil {
		if r.openerFailed {
			return false
		}
		var err error
		if o, err = r.newOpener(); err != nil {
			r.openerFailed = true
			return false
		}
		r.opener = o
	}
	if now := time.Now().Unix(); now != o.window {
		o.window, o.used = now, 0
	}
	if o.used >= alertsPerSecond {
		return false
	}
	o.used++
	// Additional data (RFC 5246 section 6.2.3.3): epoch and sequence
	// number, type, version, plaintext length.
	copy(o.ad[:8], rec[3:11])
	o.ad[8], o.ad[9], o.ad[10] = rec[0], rec[1], rec[2]
	binary.BigEndian.PutUint16(o.ad[11:], 2) // the plaintext's length
	copy(o.nonce[:4], o.iv[:])
	copy(o.nonce[4:], rec[recordHeader:recordHeader+8])
	sealed := o.buf[:copy(o.buf[:], rec[recordHeader+8:])]
	plain, err := o.aead.Open(sealed[:0], o.nonce[:], sealed, o.ad[:])
	if err != nil || len(plain) != 2 {
		return false
	}
	// Level 2 is fatal; description 0 is close_notify.
	return plain[0] == byte(alert.Fatal) || plain[1] == byte(alert.CloseNotify)
}

func (r *dtlsRecords) newOpener() (*alertOpener, error) {
	k, err := r.keys()
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k.ClientWriteKey)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	o := &alertOpener{aead: g}
	copy(o.iv[:], k.ClientWriteIV)
	return o, nil
}

// closeNotify seals the association's close_notify alert, once: the
// sequence number is used up.
func (r *dtlsRecords) closeNotify() ([]byte, error) {
	if !r.canSend {
		return nil, errors.New("dtls: sequence number not owned")
	}
	r.canSend = false
	g, err := r.cipher()
	if err != nil {
		return nil, err
	}
	rec := &recordlayer.RecordLayer{
		Header: recordlayer.Header{
			Epoch: r.snap.LocalEpoch, Version: protocol.Version1_2, SequenceNumber: r.snap.SequenceNumber,
		},
		Content: &alert.Alert{Level: alert.Warning, Description: alert.CloseNotify},
	}
	raw, err := rec.Marshal()
	if err != nil {
		return nil, err
	}
	return g.Encrypt(rec, raw)
}
