package main

import (
	"net"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// nackCounter counts the sequence numbers the viewers' NACK generator asks
// for. It must be registered before the generator so that the generator's
// RTCP writer is the counting one.
type nackCounter struct {
	interceptor.NoOp
	n *atomic.Uint64
}

type nackCounterFactory struct{ n *atomic.Uint64 }

func (f nackCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackCounter{n: f.n}, nil
}

func (c *nackCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				for _, pair := range nack.Nacks {
					c.n.Add(uint64(len(pair.PacketList())))
				}
			}
		}
		return w.Write(pkts, a)
	})
}

// loopbackAPIWithReplayWindow is rtcclient.LoopbackAPI with a larger SRTP
// replay window. pion's default of 64 packets makes the receiver discard a
// retransmission that arrives more than 64 packets after the highest one
// received, e.g. one NACKed during a GOP burst; libwebrtc (browsers) uses
// 1024. Keep the settings in step with rtcclient.LoopbackAPI.
func loopbackAPIWithReplayWindow(configure func(*webrtc.MediaEngine, *interceptor.Registry) error, window uint) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	reg := &interceptor.Registry{}
	if err := configure(m, reg); err != nil {
		return nil, err
	}
	s := webrtc.SettingEngine{}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetIncludeLoopbackCandidate(true)
	s.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	s.SetSRTPReplayProtectionWindow(window)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s)), nil
}
