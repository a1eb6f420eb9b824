package rtcclient

import (
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// NACKCounter is an interceptor factory that counts NACKed sequence
// numbers into N: the ones a PeerConnection receives (a publisher asked
// for retransmissions), or with Sent the ones it sends. To count what
// pion's NACK generator sends, register it before the generator, so that
// the generator's RTCP writer is the counting one.
type NACKCounter struct {
	N    *atomic.Uint64
	Sent bool
}

// NewInterceptor implements interceptor.Factory.
func (f NACKCounter) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackCounter{f: f}, nil
}

type nackCounter struct {
	interceptor.NoOp
	f NACKCounter
}

func (c *nackCounter) count(pkts []rtcp.Packet) {
	for _, p := range pkts {
		if nack, ok := p.(*rtcp.TransportLayerNack); ok {
			for _, pair := range nack.Nacks {
				c.f.N.Add(uint64(len(pair.PacketList())))
			}
		}
	}
}

func (c *nackCounter) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	if c.f.Sent {
		return r
	}
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		if pkts, err := attr.GetRTCPPackets(b[:n]); err == nil {
			c.count(pkts)
		}
		return n, attr, nil
	})
}

func (c *nackCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	if !c.f.Sent {
		return w
	}
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		c.count(pkts)
		return w.Write(pkts, a)
	})
}
