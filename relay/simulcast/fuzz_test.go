package simulcast

import (
	"testing"

	"github.com/livegate/livegate/relay/codec"
)

// FuzzPayloadParsing: the switch-point and picture-number parsers read
// publishers' payloads and must never panic on them.
func FuzzPayloadParsing(f *testing.F) {
	f.Add([]byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8})
	f.Add([]byte{0x18, 0x00, 0x05, 0x67, 0x42, 0xc0, 0x1f, 0xda})
	f.Add([]byte{0x90, 0xe0, 0x80, 0x01, 0x02, 0x10, 0x9d, 0x01, 0x2a, 0x80, 0x02})
	f.Add([]byte{0xaa, 0x80, 0x01, 0x02, 0x18, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, mime := range []string{codec.MimeH264, codec.MimeVP8, codec.MimeVP9, codec.MimeAV1} {
			keyStart(mime, p)
			fs := fieldsOf(mime, p)
			if fs != noFields {
				var n numbering
				q := append([]byte(nil), p...)
				n.rebase(fs, q)
				n.rewrite(fs, q, true)
			}
		}
	})
}
