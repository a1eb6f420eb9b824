package lite

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// BenchmarkSeal compares sealing one 1,100-byte packet with a transport-cc
// extension as the peer does it: header marshalled and payload copied into
// the worker's slot, then encrypted in place by pion's Context or by the
// sealer; "aead" is crypto/cipher's Seal alone, the floor. With 120
// viewers each packet goes to the next viewer's context in turn, as the
// fan-out does, so that each seal finds its context's state out of the
// nearest caches as it does in the gateway.
func BenchmarkSeal(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	payload := make([]byte, 1100)
	for _, viewers := range []int{1, 120, 2000} {
		h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x1234, Timestamp: 1}
		_ = h.SetExtension(3, []byte{0, 0})
		arena := make([]byte, viewers*slotSize)
		fill := func(v int) ([]byte, int) {
			if v == 0 {
				h.SequenceNumber++
			}
			n := h.MarshalSize()
			dst := arena[v*slotSize : v*slotSize+n+len(payload) : (v+1)*slotSize]
			if _, err := h.MarshalTo(dst); err != nil {
				b.Fatal(err)
			}
			copy(dst[n:], payload)
			return dst, n
		}
		pions := make([]*srtp.Context, viewers)
		ours := make([]*gcmSealer, viewers)
		for v := range viewers {
			key, salt := gcmKeys(rng)
			pions[v] = pionGCM(b, key, salt)
			var err error
			if ours[v], err = newGCMSealer(key, salt); err != nil {
				b.Fatal(err)
			}
			ours[v].stream(0x9999) // an audio SSRC too, as a viewer has
		}
		b.Run(fmt.Sprintf("pion/viewers=%d", viewers), func(b *testing.B) {
			var whdr rtp.Header
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			v := 0
			for b.Loop() {
				dst, _ := fill(v)
				if _, err := pions[v].EncryptRTP(dst[:0], dst, &whdr); err != nil {
					b.Fatal(err)
				}
				v = (v + 1) % viewers
			}
		})
		b.Run(fmt.Sprintf("lite/viewers=%d", viewers), func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			v := 0
			for b.Loop() {
				dst, n := fill(v)
				if _, _, err := ours[v].seal(dst, n, h.SSRC, h.SequenceNumber); err != nil {
					b.Fatal(err)
				}
				v = (v + 1) % viewers
			}
		})
		b.Run(fmt.Sprintf("aead/viewers=%d", viewers), func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			v := 0
			for b.Loop() {
				dst, n := fill(v)
				s := ours[v]
				s.aead.Seal(dst[n:n], s.iv[:], dst[n:], dst[:n])
				v = (v + 1) % viewers
			}
		})
	}
}

// The key derivation against RFC 3711 appendix B.3's vectors (a 112-bit
// salt; the GCM profile's 96-bit one is the same PRF with two zero bytes).
func TestSRTPKDFVectors(t *testing.T) {
	hexb := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	prf, err := aes.NewCipher(hexb("E1F97A0D3E018BE0D64FA32C06DE4139"))
	if err != nil {
		t.Fatal(err)
	}
	salt := hexb("0EC675AD498AFEEBB6960B3AABE6")
	key, ssalt := make([]byte, 16), make([]byte, 14)
	srtpKDF(prf, salt, labelRTPCipherKey, key)
	srtpKDF(prf, salt, labelRTPSalt, ssalt)
	if want := hexb("C61E7A93744F39EE10734AFE3FF7A087"); !bytes.Equal(key, want) {
		t.Fatalf("cipher key %x, want %x", key, want)
	}
	if want := hexb("30CBBC08863D8C85D49DB34A9AE1"); !bytes.Equal(ssalt, want) {
		t.Fatalf("cipher salt %x, want %x", ssalt, want)
	}
}
