package lite

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/gob"
	"errors"
	"fmt"
	"hash"

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

// cipher derives the association's record keys (RFC 5246 section 6.3). It
// is built when needed, not kept: alerts are rare and a GCM pair costs
// more memory than the secret it comes from.
func (r *dtlsRecords) cipher() (*ciphersuite.GCM, error) {
	keyLen, h, err := suiteParams(dtls.CipherSuiteID(r.snap.CipherSuiteID))
	if err != nil {
		return nil, err
	}
	k, err := prf.GenerateEncryptionKeys(r.snap.MasterSecret, r.snap.RemoteRandom[:], r.snap.LocalRandom[:], 0, keyLen, 4, h)
	if err != nil {
		return nil, err
	}
	return ciphersuite.NewGCM(k.ServerWriteKey, k.ServerWriteIV, k.ClientWriteKey, k.ClientWriteIV)
}

// viewerEnded reports whether a datagram from the viewer holds an
// authentic alert that ends the association: close_notify or any fatal
// alert. Records that do not open with the association's keys (forged, or
// from before the handshake) are ignored.
func (r *dtlsRecords) viewerEnded(datagram []byte) bool {
	recs, err := recordlayer.UnpackDatagram(datagram)
	if err != nil {
		return false
	}
	var g *ciphersuite.GCM
	for _, rec := range recs {
		var h recordlayer.Header
		if h.Unmarshal(rec) != nil || h.ContentType != protocol.ContentTypeAlert || h.Epoch != r.snap.LocalEpoch {
			continue
		}
		if g == nil {
			if g, err = r.cipher(); err != nil {
				return false
			}
		}
		plain, err := g.Decrypt(h, append([]byte(nil), rec...))
		if err != nil || len(plain) < h.Size()+2 {
			continue
		}
		var a alert.Alert
		if a.Unmarshal(plain[h.Size():]) != nil {
			continue
		}
		if a.Level == alert.Fatal || a.Description == alert.CloseNotify {
			return true
		}
	}
	return false
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
