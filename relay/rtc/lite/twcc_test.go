package lite

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Stamping adds the transport sequence number as the one extension, counts
// up, and allocates nothing (it runs per packet per viewer).
func TestTWCCStamp(t *testing.T) {
	c := newCC(CC{ExtID: 3})
	h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 1}
	out := c.stamp(h, 1000)
	buf := make([]byte, 1500)
	n, err := out.MarshalTo(buf)
	if err != nil {
		t.Fatal(err)
	}
	var back rtp.Header
	if _, err := back.Unmarshal(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if got := back.GetExtension(3); len(got) != 2 || got[0] != 0 || got[1] != 0 {
		t.Fatalf("extension 3 = %v, want transport sequence number 0", got)
	}
	if h.Extension || len(h.Extensions) != 0 {
		t.Fatalf("stamp changed the caller's header: %+v", h)
	}
	if got := c.stamp(h, 1000).GetExtension(3); got[1] != 1 {
		t.Fatalf("second packet: %v, want 1", got)
	}
	if a := testing.AllocsPerRun(1000, func() { c.stamp(h, 1000) }); a != 0 {
		t.Fatalf("stamp allocates %v times per packet", a)
	}
	if newCC(CC{}) != nil || newCC(CC{ExtID: 15}) != nil {
		t.Fatal("no id, or one outside the one-byte form, must turn transport-cc off")
	}
	var nilCC *cc
	if nilCC.stamp(h, 10) != h {
		t.Fatal("without transport-cc the header goes as it is")
	}
}

// sim drives a cc with synthetic packets and feedback.
type sim struct {
	t   *testing.T
	c   *cc
	wmu sync.Mutex
	now time.Time
	got []Estimate
}

func newSim(t *testing.T) *sim {
	s := &sim{t: t, now: time.Unix(1000, 0)}
	s.c = newCC(CC{ExtID: 3, OnEstimate: func(e Estimate) { s.got = append(s.got, e) }})
	s.c.hist = new([ccHist]sentPacket)
	// Send times are kept relative to base: the sim's start, 10 s ago.
	s.c.base = time.Now().Add(-10 * time.Second)
	return s
}

// send records a packet sent at ms milliseconds (from the sim's start).
func (s *sim) send(ms float64, size int, cluster uint16) uint16 {
	c := s.c
	seq := c.next
	c.next++
	c.hist[seq%ccHist] = sentPacket{at: uint32(ms * 1e3), seq: seq, size: uint16(size), cluster: cluster, state: sentOut}
	if cluster != 0 {
		c.probe.noteSent(seq)
	}
	return seq
}

// feedback reports packets from seq on: arrival in ms, or < 0 for lost.
func (s *sim) feedback(base uint16, arrivals []float64) {
	t := &rtcp.TransportLayerCC{BaseSequenceNumber: base, PacketStatusCount: uint16(len(arrivals)), ReferenceTime: 10}
	prev := int64(10 * 64000)
	for _, a := range arrivals {
		if a < 0 {
			t.PacketChunks = append(t.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1})
			continue
		}
		at := int64(10*64000) + int64(a*1000)
		t.PacketChunks = append(t.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedLargeDelta, RunLength: 1})
		t.RecvDeltas = append(t.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: at - prev})
		prev = at
	}
	s.c.feedback(&s.wmu, t, s.now)
}

func TestParseTWCC(t *testing.T) {
	fb := &rtcp.TransportLayerCC{
		BaseSequenceNumber: 65534, PacketStatusCount: 5, ReferenceTime: 1,
		PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{1, 0, 2}},
			&rtcp.RunLengthChunk{PacketStatusSymbol: 1, RunLength: 7}, // only 2 of them count
		},
		RecvDeltas: []*rtcp.RecvDelta{{Delta: 1000}, {Delta: -250}, {Delta: 500}, {Delta: 250}},
	}
	got := parseTWCC(nil, fb)
	want := []fbResult{
		{seq: 65534, recv: true, arrival: 64000 + 1000},
		{seq: 65535},
		{seq: 0, recv: true, arrival: 64000 + 750},
		{seq: 1, recv: true, arrival: 64000 + 1250},
		{seq: 2, recv: true, arrival: 64000 + 1500},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// More received packets than deltas: stop, do not invent arrivals.
	fb.RecvDeltas = fb.RecvDeltas[:1]
	if got := parseTWCC(nil, fb); len(got) != 2 {
		t.Fatalf("truncated deltas: %d results, want 2", len(got))
	}
}

// Windows of media feedback: loss, delivered rate and overuse.
func TestTWCCWindows(t *testing.T) {
	for _, tc := range []struct {
		name string
		// per packet i (of 40, 1200 bytes, one every 10 ms = 960 kbit/s):
		// arrival in ms relative to the send time, < 0 lost
		arrive      func(i int) float64
		wantLoss    float64
		wantOveruse bool
		minRate     float64
		maxRate     float64
	}{
		{name: "carried", arrive: func(i int) float64 { return 20 }, wantLoss: 0, minRate: 900_000, maxRate: 1_000_000},
		{name: "bottleneck drops 30 %", arrive: func(i int) float64 {
			if i%10 < 3 {
				return -1
			}
			return 20
		}, wantLoss: 0.3, wantOveruse: true},
		{name: "queue grows to 400 ms", arrive: func(i int) float64 { return 20 + 10*float64(i) }, wantOveruse: true,
			minRate: 400_000, maxRate: 520_000},
		{name: "jitter is no overuse", arrive: func(i int) float64 { return 20 + float64(i%3)*15 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			// The first feedback opens a window, the next two close two: the
			// queue rule needs two in a row.
			for w := 0; w < 3; w++ {
				base := s.c.next
				var arr []float64
				for i := 0; i < 40; i++ {
					sent := float64(w*400 + i*10)
					s.send(sent, 1200, 0)
					a := tc.arrive(i)
					if a >= 0 {
						a += sent
					}
					arr = append(arr, a)
				}
				s.now = s.now.Add(400 * time.Millisecond)
				s.feedback(base, arr)
			}
			// Two windows closed 400 ms apart: both reported when they say
			// something, only the first when both are clean (once a second).
			want := 2
			if tc.wantLoss == 0 && !tc.wantOveruse {
				want = 1
			}
			if len(s.got) != want {
				t.Fatalf("%d estimates, want %d", len(s.got), want)
			}
			e := s.got[len(s.got)-1]
			if e.Loss < tc.wantLoss-0.01 || e.Loss > tc.wantLoss+0.01 {
				t.Errorf("loss %.3f, want %.2f", e.Loss, tc.wantLoss)
			}
			if e.Overuse != tc.wantOveruse {
				t.Errorf("overuse %v, want %v (%+v)", e.Overuse, tc.wantOveruse, e)
			}
			if tc.minRate > 0 && (e.Bitrate < tc.minRate || e.Bitrate > tc.maxRate) {
				t.Errorf("delivered %.0f bit/s, want %.0f-%.0f", e.Bitrate, tc.minRate, tc.maxRate)
			}
		})
	}
}

// A probe cluster: padding at 2 Mbit/s for probeDuration with media in
// between, judged when the whole cluster is reported.
func TestProbeOutcome(t *testing.T) {
	const pad = 275 // bytes on the wire
	probeMs := float64(probeDuration.Milliseconds())
	for _, tc := range []struct {
		name string
		// arrival (ms after it was sent) of the cluster's packet i of n; < 0 lost
		arrive  func(i, n int) float64
		partial bool // feedback stops half way
		want    ProbeOutcome
	}{
		{name: "the link carries it", arrive: func(i, n int) float64 { return 30 }, want: ProbeCarried},
		{name: "jitter, no queue", arrive: func(i, n int) float64 { return 30 + float64(i%4) }, want: ProbeCarried},
		{name: "Wi-Fi: every fifth packet 30 ms late", arrive: func(i, n int) float64 {
			if i%5 == 0 {
				return 60
			}
			return 30
		}, want: ProbeCarried},
		{name: "400 kbit/s bottleneck: the queue grows", arrive: func(i, n int) float64 {
			// Delivered at 400 kbit/s: packet i leaves the bottleneck at
			// i*pad*8/400k s, while it was sent at i*150/n ms.
			return 30 + float64(i)*pad*8/400 - float64(i)*probeMs/float64(n)
		}, want: ProbeFailed},
		{name: "the queue overflows", arrive: func(i, n int) float64 {
			if i > n/2 && i%3 == 0 {
				return -1
			}
			return 30 + float64(i)
		}, want: ProbeFailed},
		{name: "feedback lost: judged after a second on half", arrive: func(i, n int) float64 { return 30 },
			partial: true, want: ProbeCarried},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			s.c.probe.id = 1
			n := int(2e6 * probeDuration.Seconds() / 8 / pad) // 2 Mbit/s of 275-byte packets
			base := s.c.next
			var arr []float64
			for i := 0; i < n; i++ {
				sent := float64(i) * probeMs / float64(n)
				s.send(sent, pad, 1)
				a := tc.arrive(i, n)
				if a >= 0 {
					a += sent
				}
				arr = append(arr, a)
				if i%10 == 5 { // media in between
					s.send(sent, 1200, 0)
					arr = append(arr, sent+tc.arrive(i, n))
				}
			}
			s.c.probe.ended, s.c.probe.endAt = true, s.now
			s.now = s.now.Add(100 * time.Millisecond)
			if tc.partial {
				s.feedback(base, arr[:len(arr)/2])
				if len(s.got) != 0 && s.got[0].Probe != ProbeNone {
					t.Fatalf("judged on half the cluster before the wait: %+v", s.got)
				}
				s.now = s.now.Add(probeWaitFeedback)
				s.feedback(base+uint16(len(arr)/2), nil)
			} else {
				s.feedback(base, arr)
			}
			var got *Estimate
			for i := range s.got {
				if s.got[i].Probe != ProbeNone {
					if got != nil {
						t.Fatalf("two outcomes: %+v", s.got)
					}
					got = &s.got[i]
				}
			}
			if got == nil {
				t.Fatalf("no outcome: %+v", s.got)
			}
			if got.Probe != tc.want {
				t.Fatalf("outcome %v, want %v (%+v)", got.Probe, tc.want, *got)
			}
			if got.ProbeRate < 1_500_000 || got.ProbeRate > 3_500_000 {
				t.Errorf("probe rate %.0f, want about 2.4 Mbit/s", got.ProbeRate)
			}
			// Media sent during the probe is no window loss.
			for _, e := range s.got {
				if e.Probe == ProbeNone && e.Loss > 0 {
					t.Errorf("window loss %.2f from the probe's packets", e.Loss)
				}
			}
		})
	}
}

func TestSentAt(t *testing.T) {
	for _, tc := range []struct {
		now int64
		at  uint32
		ago int64 // µs
	}{{5_000_000, 4_000_000, 1_000_000}, {1<<32 + 1000, 1<<32 - 2000, 3000}, {10, 10, 0}} {
		if got := sentAt(tc.now, tc.at); got != (tc.now-tc.ago)*1000 {
			t.Errorf("sentAt(%d, %d) = %d ns, want %d", tc.now, tc.at, got, (tc.now-tc.ago)*1000)
		}
	}
	if s := unsafe.Sizeof(sentPacket{}); s > 12 {
		t.Errorf("a sent packet takes %d bytes, want <= 12 (per viewer: %d of them)", s, ccHist)
	}
}

// TestHostileFeedbackIsCheap: a viewer holds its own SRTCP keys, so it can
// send transport-cc messages claiming 65535 packets in 40 bytes, many per
// datagram; the shared socket's reading goroutine must not walk them all.
func TestHostileFeedbackIsCheap(t *testing.T) {
	fb := &rtcp.TransportLayerCC{
		Header:     rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback},
		SenderSSRC: 1, MediaSSRC: 2, PacketStatusCount: 65535,
	}
	for left := 65535; left > 0; left -= min(left, 8191) {
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{
			PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: uint16(min(left, 8191))})
	}
	fb.Header.Length = uint16(fb.MarshalSize()/4 - 1)
	raw, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(parseTWCC(nil, pkts[0].(*rtcp.TransportLayerCC))); got > ccHist {
		t.Fatalf("a %d-byte message listed %d packets; want at most the %d the history holds", len(raw), got, ccHist)
	}

	c := newCC(CC{ExtID: 3})
	var mu sync.Mutex
	h := &rtp.Header{Version: 2, SSRC: 5}
	for range 600 {
		mu.Lock()
		c.stamp(h, 1000)
		mu.Unlock()
	}
	// A second's flood: 1,000 such messages (35 datagrams of 30 would do it).
	now := time.Now()
	start := time.Now()
	for i := range 1000 {
		c.feedback(&mu, pkts[0].(*rtcp.TransportLayerCC), now.Add(time.Duration(i)*time.Millisecond))
	}
	took := time.Since(start)
	t.Logf("1,000 hostile feedback messages in one second: %v on the reading goroutine", took)
	if took > 100*time.Millisecond {
		t.Errorf("a second's flood of hostile feedback took %v to read (want well under 100 ms)", took)
	}
	if cap(c.res) > 2*ccHist {
		t.Errorf("the peer keeps room for %d results after hostile feedback; want about %d", cap(c.res), ccHist)
	}
}
