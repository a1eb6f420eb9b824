package whep

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

type countSink struct{ n atomic.Int64 }

func (s *countSink) WriteRTP(*rtp.Header, []byte) error { s.n.Add(1); return nil }
func (s *countSink) WriteSenderReport(uint64, uint32, uint32, uint32) error {
	return nil
}

// FuzzViewerRTCP feeds arbitrary RTCP from a viewer to the gateway's
// handling: it must never panic, and retransmissions stay bounded.
func FuzzViewerRTCP(f *testing.F) {
	seed := func(pkts ...rtcp.Packet) {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&rtcp.PictureLossIndication{MediaSSRC: 1})
	seed(&rtcp.FullIntraRequest{MediaSSRC: 1, FIR: []rtcp.FIREntry{{SSRC: 1}}})
	seed(&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 10, LostPackets: 0xffff}}})
	seed(&rtcp.ReceiverReport{SSRC: 2, Reports: []rtcp.ReceptionReport{{SSRC: 1, FractionLost: 3}}})
	f.Add([]byte{0x81, 0xcd, 0x00, 0x03})

	hub := relay.NewHub(relay.Params{Workers: 1, KeyframeWait: -1, MaxQueueDelay: -1})
	f.Cleanup(hub.Close)
	info := relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000}}
	pub, err := hub.Publish("fuzz/rtcp", []relay.TrackInfo{info}, nopSource{})
	if err != nil {
		f.Fatal(err)
	}
	st, _ := hub.Get("fuzz/rtcp")
	sink := &countSink{}
	r, err := st.AddReader(st.Tracks()[0], sink)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 300 {
		p := []byte{0x41, byte(i)}
		if i%50 == 0 {
			p[0] = 0x65
		}
		pub.WriteRTP(0, &rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true}, p)
	}
	for deadline := time.Now().Add(5 * time.Second); sink.n.Load() < 300; {
		if time.Now().After(deadline) {
			f.Fatalf("reader got %d of 300 packets", sink.n.Load())
		}
		time.Sleep(time.Millisecond)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, err := rtcp.Unmarshal(data)
		if err != nil {
			return
		}
		before := sink.n.Load()
		handleRTCP(r, pkts, nil)
		if sent := sink.n.Load() - before; sent > int64(maxNACKsPerPacket*len(pkts)+len(pkts)) {
			t.Fatalf("%d retransmissions for %d RTCP packets", sent, len(pkts))
		}
	})
}
