package lite

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/alert"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
)

// testRecords is a released association with fixed keys, and the
// viewer's side of it.
func testRecords(t testing.TB) (*dtlsRecords, *ciphersuite.GCM) {
	snap := dtlsSnapshot{LocalEpoch: 1, CipherSuiteID: uint16(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
		MasterSecret: bytes.Repeat([]byte{7}, 48), SequenceNumber: 5}
	for i := range snap.LocalRandom {
		snap.LocalRandom[i], snap.RemoteRandom[i] = byte(i), byte(100+i)
	}
	k, err := prf.GenerateEncryptionKeys(snap.MasterSecret, snap.RemoteRandom[:], snap.LocalRandom[:], 0, 16, 4, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ciphersuite.NewGCM(k.ClientWriteKey, k.ClientWriteIV, k.ServerWriteKey, k.ServerWriteIV)
	if err != nil {
		t.Fatal(err)
	}
	return &dtlsRecords{snap: snap, canSend: true}, client
}

// clientAlert is an alert record as the viewer's DTLS stack seals it.
func clientAlert(t testing.TB, c *ciphersuite.GCM, epoch uint16, seq uint64, a alert.Alert) []byte {
	rec := &recordlayer.RecordLayer{
		Header:  recordlayer.Header{Epoch: epoch, Version: protocol.Version1_2, SequenceNumber: seq},
		Content: &a,
	}
	raw, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Encrypt(rec, raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Which datagrams end a released association: only authentic close_notify
// or fatal alerts in a datagram of whole records (from the review).
func TestViewerEndedTable(t *testing.T) {
	_, client := testRecords(t)
	good := clientAlert(t, client, 1, 9, alert.Alert{Level: alert.Warning, Description: alert.CloseNotify})
	fatal := clientAlert(t, client, 1, 10, alert.Alert{Level: alert.Fatal, Description: alert.BadRecordMac})
	warn := clientAlert(t, client, 1, 11, alert.Alert{Level: alert.Warning, Description: alert.NoRenegotiation})
	flip := append([]byte(nil), good...)
	flip[len(flip)-1] ^= 1
	hdrOnly := append([]byte(nil), good[:13]...)
	hdrOnly[11], hdrOnly[12] = 0, 0
	short := append([]byte(nil), good[:13+8]...)
	short[11], short[12] = 0, 8
	short2 := append([]byte(nil), good[:13+9]...)
	short2[11], short2[12] = 0, 9
	tagOnly := append([]byte(nil), good[:13+8+16]...)
	tagOnly[11], tagOnly[12] = 0, 24
	epoch2 := append([]byte(nil), good...)
	epoch2[4] = 2
	cid := append([]byte(nil), good...)
	cid[0] = byte(protocol.ContentTypeConnectionID)
	ccs := append([]byte(nil), good...)
	ccs[0] = byte(protocol.ContentTypeChangeCipherSpec)
	longLen := append([]byte(nil), good...)
	longLen[11], longLen[12] = 0xff, 0xff
	seqFlip := append([]byte(nil), good...)
	seqFlip[10] ^= 1                                // the sequence number is authenticated
	long := append(append([]byte(nil), good...), 0) // room for more than one alert
	long[11], long[12] = 0, byte(len(long)-13)
	many := bytes.Repeat(short2, 60)
	cases := []struct {
		name string
		b    []byte
		want bool
	}{
		{"empty", nil, false},
		{"one byte", []byte{21}, false},
		{"13 bytes", good[:13], false},
		{"header, zero length", hdrOnly, false},
		{"nonce only", short, false},
		{"nonce and one byte", short2, false},
		{"nonce and tag", tagOnly, false},
		{"length beyond datagram", longLen, false},
		{"bit flipped", flip, false},
		{"alert record one byte longer", long, false},
		{"sequence number changed", seqFlip, false},
		{"other epoch", epoch2, false},
		{"connection ID type", cid, false},
		{"change cipher spec type", ccs, false},
		{"60 short records", many, false},
		{"warning alert", warn, false},
		{"close_notify", good, true},
		{"fatal", fatal, true},
		{"garbage then close_notify", append(append([]byte(nil), short2...), good...), true},
		{"close_notify then trailing byte", append(append([]byte(nil), good...), 0), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := testRecords(t)
			in := append([]byte(nil), c.b...)
			if got := r.viewerEnded(in); got != c.want {
				t.Fatalf("viewerEnded = %v, want %v", got, c.want)
			}
			if !bytes.Equal(in, c.b) {
				t.Fatal("viewerEnded changed the datagram")
			}
		})
	}
}

// The close_notify is sealed once: a second call must not reuse the
// sequence number, and the viewer opens the first.
func TestCloseNotifyOnce(t *testing.T) {
	r, client := testRecords(t)
	b, err := r.closeNotify()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.closeNotify(); err == nil {
		t.Fatal("second close_notify sealed with the same sequence number")
	}
	var h recordlayer.Header
	if err := h.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if h.SequenceNumber != 5 || h.Epoch != 1 {
		t.Fatalf("seq %d epoch %d", h.SequenceNumber, h.Epoch)
	}
	plain, err := client.Decrypt(h, append([]byte(nil), b...))
	if err != nil {
		t.Fatal(err)
	}
	var a alert.Alert
	if err := a.Unmarshal(plain[h.Size():]); err != nil || a.Description != alert.CloseNotify {
		t.Fatalf("alert %v %v", a, err)
	}
	// Our own close_notify reflected back does not open as the viewer's.
	if r.viewerEnded(b) {
		t.Fatal("a reflected close_notify of ours ended the peer")
	}
}

// Found in review: every forged alert record re-derived the association's
// keys (about 10 us, 6 KB and 49 allocations) on the goroutine that reads
// all viewers' and publishers' datagrams. Now a forged alert costs one
// AES-GCM open without allocating, at most alertsPerSecond are opened per
// peer, and the viewer's real close_notify still counts.
func TestForgedAlertIsCheap(t *testing.T) {
	r, client := testRecords(t)
	forged := clientAlert(t, client, 1, 9, alert.Alert{Level: alert.Warning, Description: alert.CloseNotify})
	forged[len(forged)-1] ^= 1
	if r.viewerEnded(forged) { // the first alert builds the opener
		t.Fatal("a forged alert ended the association")
	}
	opened := testing.AllocsPerRun(200, func() {
		r.opener.used = 0 // within the budget: opened
		if r.viewerEnded(forged) {
			t.Fatal("a forged alert ended the association")
		}
	})
	dropped := testing.AllocsPerRun(200, func() {
		if r.viewerEnded(forged) {
			t.Fatal("a forged alert ended the association")
		}
	})
	tiny := []byte{21, 254, 253, 0, 1, 0, 0, 0, 0, 0, 9, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	short := testing.AllocsPerRun(200, func() { r.viewerEnded(tiny) })
	t.Logf("allocations per forged alert: %.0f opened, %.0f over the budget, %.0f too short", opened, dropped, short)
	if opened != 0 || dropped != 0 || short != 0 {
		t.Fatalf("allocations per forged alert: %.0f opened, %.0f over the budget, %.0f too short, want none",
			opened, dropped, short)
	}
	// Timed against what every forged alert used to cost (deriving the
	// keys), so that the check holds under -race and on a busy machine.
	const n = 500
	start := time.Now()
	for range n {
		r.opener.used = 0
		r.viewerEnded(forged)
	}
	per := time.Since(start) / n
	start = time.Now()
	for range n {
		if _, err := r.newOpener(); err != nil {
			t.Fatal(err)
		}
	}
	derive := time.Since(start) / n
	t.Logf("%v per forged alert opened, %v to derive the keys", per, derive)
	if per > derive/3 {
		t.Fatalf("%v per forged alert opened, more than a third of deriving the keys (%v)", per, derive)
	}

	// A flood uses up the second's budget; the viewer's close_notify in
	// the next second still ends the association.
	r.opener.used = 0
	for range 3 * alertsPerSecond {
		r.viewerEnded(forged)
	}
	if r.opener.used != alertsPerSecond {
		t.Fatalf("%d alerts opened in a second, want %d", r.opener.used, alertsPerSecond)
	}
	real := clientAlert(t, client, 1, 10, alert.Alert{Level: alert.Warning, Description: alert.CloseNotify})
	r.opener.window-- // the next second
	if !r.viewerEnded(real) {
		t.Fatal("the viewer's close_notify after a flood did not end the association")
	}
}

// FuzzViewerEnded: any datagram from a viewer's address is either
// recognised or ignored, never a panic, and never changed.
func FuzzViewerEnded(f *testing.F) {
	r, client := testRecords(f)
	f.Add(clientAlert(f, client, 1, 3, alert.Alert{Level: alert.Warning, Description: alert.CloseNotify}))
	f.Add([]byte{21, 254, 253, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		r.mu.Lock()
		if r.opener != nil {
			r.opener.used = 0
		}
		r.mu.Unlock()
		_ = r.viewerEnded(in)
		if !bytes.Equal(in, b) {
			t.Fatal("viewerEnded changed the datagram")
		}
	})
}

func BenchmarkForgedAlert(b *testing.B) {
	r, client := testRecords(b)
	forged := clientAlert(b, client, 1, 9, alert.Alert{Level: alert.Warning, Description: alert.CloseNotify})
	forged[len(forged)-1] ^= 1
	r.viewerEnded(forged)
	b.ReportAllocs()
	for b.Loop() {
		r.opener.used = 0
		if r.viewerEnded(forged) {
			b.Fatal("forged")
		}
	}
}
