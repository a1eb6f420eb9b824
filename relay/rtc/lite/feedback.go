package lite

import (
	"sync/atomic"

	"github.com/pion/rtcp"
)

// Feedback is what a viewer told us about its reception, kept for
// congestion control and stats (nothing acts on REMB or transport-cc yet).
type Feedback struct {
	ReceiverReports atomic.Uint64
	FractionLost    atomic.Uint32 // of the last report block, /256
	TotalLost       atomic.Uint32
	Jitter          atomic.Uint32 // RTP timestamp units
	NACKs           atomic.Uint64 // NACK packets
	KeyframeReqs    atomic.Uint64 // PLI + FIR
	REMBBitrate     atomic.Uint64 // bit/s, last REMB
	TransportCC     atomic.Uint64 // transport-cc feedback packets
}

func (f *Feedback) note(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.ReceiverReport:
			f.ReceiverReports.Add(1)
			if len(p.Reports) > 0 {
				r := p.Reports[0]
				f.FractionLost.Store(uint32(r.FractionLost))
				f.TotalLost.Store(r.TotalLost)
				f.Jitter.Store(r.Jitter)
			}
		case *rtcp.TransportLayerNack:
			f.NACKs.Add(1)
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			f.KeyframeReqs.Add(1)
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			f.REMBBitrate.Store(uint64(p.Bitrate))
		case *rtcp.TransportLayerCC:
			f.TransportCC.Add(1)
		}
	}
}
