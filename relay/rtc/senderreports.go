package rtc

import (
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// ReadSenderReports reads a receiver's RTCP with read (an RTPReceiver's
// ReadRTCP, or ReadSimulcastRTCP of one layer) until it fails (the
// receiver stopped), and hands the NTP and RTP times of each sender report
// to sr: the relay's clock for A/V sync and delay.
func ReadSenderReports(read func() ([]rtcp.Packet, interceptor.Attributes, error), sr func(ntp uint64, rtpTime uint32)) {
	for {
		pkts, _, err := read()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if r, ok := p.(*rtcp.SenderReport); ok {
				sr(r.NTPTime, r.RTPTime)
			}
		}
	}
}
