package rtcclient

import (
	"sync/atomic"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// TestNACKCounter: every sequence number a NACK names is counted once, in
// the direction asked for only (a publisher counts the NACKs it receives,
// the load tool's viewers those they send), and RTCP passes unchanged.
func TestNACKCounter(t *testing.T) {
	// 100 and the bitmask's 101, 103: three sequence numbers; 200 alone.
	nack := &rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0b101}, {PacketID: 200}}}
	pkts := []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 1}, nack}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	for _, sent := range []bool{false, true} {
		var n atomic.Uint64
		i, err := NACKCounter{N: &n, Sent: sent}.NewInterceptor("")
		if err != nil {
			t.Fatal(err)
		}
		var written int
		w := i.BindRTCPWriter(interceptor.RTCPWriterFunc(func(p []rtcp.Packet, _ interceptor.Attributes) (int, error) {
			written = len(p)
			return 0, nil
		}))
		if _, err := w.Write(pkts, nil); err != nil || written != 2 {
			t.Fatalf("sent=%v: write passed %d packets, %v", sent, written, err)
		}
		r := i.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, raw), a, nil
		}))
		buf := make([]byte, 1500)
		if m, _, err := r.Read(buf, nil); err != nil || m != len(raw) {
			t.Fatalf("sent=%v: read %d bytes, %v; want %d", sent, m, err, len(raw))
		}
		if got := n.Load(); got != 4 {
			t.Errorf("sent=%v: counted %d sequence numbers, want 4 (one direction only)", sent, got)
		}
	}
}
