package gateway

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
)

// The fault tests' viewer: it records every packet and judges frames the
// way a player would (jitter buffer, playout deadline, decodability).

// ---- viewer side ----------------------------------------------------------

// rxPacket is a video packet as the viewer received it.
type rxPacket struct {
	ext     int64 // sequence number unwrapped in arrival order
	ts      uint32
	marker  bool
	payload []byte
	at      time.Time
}

// faultViewer is a WHEP viewer that records every video packet (duplicates
// and order included) for a player-like reassembly afterwards, and that,
// like a browser, asks for a keyframe when a gap is not filled by
// retransmissions within pliAfter (0: never asks).
type faultViewer struct {
	*rtcclient.Session
	pliAfter time.Duration

	mu        sync.Mutex
	pkts      []rxPacket
	ssrcs     map[uint32]bool
	hi        int64
	started   bool
	missing   map[int64]time.Time // gaps not yet filled, since when
	audio     int
	plis      int
	videoSSRC uint32
	states    []webrtc.PeerConnectionState

	stop chan struct{}
	wg   sync.WaitGroup
}

func (g *testGateway) faultView(t *testing.T, path string, pliAfter time.Duration) *faultViewer {
	t.Helper()
	v := &faultViewer{pliAfter: pliAfter, ssrcs: map[uint32]bool{}, missing: map[int64]time.Time{}, stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := rtcclient.Connect(ctx, g.base+"/whep/"+path, clientOpts(t), func(pc *webrtc.PeerConnection) error {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
		}
		pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
			v.mu.Lock()
			v.states = append(v.states, st)
			v.mu.Unlock()
		})
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			v.wg.Add(1)
			go func() {
				defer v.wg.Done()
				v.read(tr)
			}()
		})
		return nil
	})
	if err != nil {
		t.Fatalf("view %s: %v", path, err)
	}
	v.Session = s
	if pliAfter > 0 {
		v.wg.Add(1)
		go v.requestKeyframes()
	}
	t.Cleanup(func() {
		close(v.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = v.Close(ctx)
		v.wg.Wait()
	})
	return v
}

func (v *faultViewer) read(tr *webrtc.TrackRemote) {
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		v.mu.Lock()
		if !video {
			v.audio++
			v.mu.Unlock()
			continue
		}
		v.ssrcs[pkt.SSRC] = true
		v.videoSSRC = pkt.SSRC
		ext := int64(pkt.SequenceNumber)
		if v.started {
			ext = v.hi + int64(int16(pkt.SequenceNumber-uint16(v.hi)))
		}
		if !v.started || ext > v.hi {
			if v.started && ext-v.hi <= 4096 {
				for s := v.hi + 1; s < ext; s++ {
					v.missing[s] = now
				}
			}
			v.hi, v.started = ext, true
		}
		delete(v.missing, ext)
		v.pkts = append(v.pkts, rxPacket{ext: ext, ts: pkt.Timestamp, marker: pkt.Marker, payload: pkt.Payload, at: now})
		v.mu.Unlock()
	}
}

// requestKeyframes sends a PLI when a gap has waited pliAfter for
// retransmissions: the player gives up on those packets and needs a
// keyframe to decode again (at most one PLI per 300 ms).
func (v *faultViewer) requestKeyframes() {
	defer v.wg.Done()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-v.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		v.mu.Lock()
		give := false
		for s, since := range v.missing {
			if now.Sub(since) > v.pliAfter {
				delete(v.missing, s)
				give = true
			}
		}
		ssrc := v.videoSSRC
		v.mu.Unlock()
		if give && now.Sub(last) > 300*time.Millisecond {
			last = now
			if v.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}) == nil {
				v.mu.Lock()
				v.plis++
				v.mu.Unlock()
			}
		}
	}
}

func (v *faultViewer) packets() []rxPacket {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.pkts)
}

// ---- what a player makes of the packets ---------------------------------------

// rxFrame is one access unit as a player with a jitter buffer reassembles
// it: packets ordered by sequence number, duplicates dropped.
type rxFrame struct {
	ts       uint32
	first    time.Time // arrival of its first packet
	done     time.Time // arrival of its last missing packet
	due      time.Time // when the stream reached this frame (see assemble)
	complete bool      // every packet since the previous frame's marker
	nalus    [][]byte
	clip     int // index of the clip access unit it equals; -1: none
	key      bool
	onTime   bool // complete by due+playout
	usable   bool // onTime and every reference since a keyframe too
}

// assemble groups packets into frames in sequence order. A frame's due time
// is the earliest arrival of any packet of it or a later frame: the moment
// the stream had reached it, whatever the publisher's pacing did. A player
// with a playout delay of playout shows the frame if it completes by
// due+playout; a delta frame is decodable (usable) only if every frame since
// the last keyframe was too.
func assemble(pkts []rxPacket, index map[[32]byte]int, playout time.Duration) []rxFrame {
	uniq := map[int64]rxPacket{}
	for _, p := range pkts {
		if _, dup := uniq[p.ext]; !dup {
			uniq[p.ext] = p
		}
	}
	sorted := make([]rxPacket, 0, len(uniq))
	for _, p := range uniq {
		sorted = append(sorted, p)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ext < sorted[j].ext })

	var frames []rxFrame
	flush := func(group []rxPacket, prev *rxPacket) {
		f := rxFrame{ts: group[0].ts, first: group[0].at, done: group[0].at, clip: -1}
		// Complete: starts right after the previous frame's marker, no
		// hole, ends with a marker.
		// The very first frame has no predecessor: the viewer starts on a
		// keyframe's first packet, so it is complete if the rest is.
		f.complete = (prev == nil || prev.marker && prev.ext+1 == group[0].ext) && group[len(group)-1].marker
		var depack codecs.H264Packet
		for i, p := range group {
			if p.at.Before(f.first) {
				f.first = p.at
			}
			if p.at.After(f.done) {
				f.done = p.at
			}
			if i > 0 && p.ext != group[i-1].ext+1 {
				f.complete = false
			}
			if annexB, err := depack.Unmarshal(p.payload); err != nil {
				f.complete = false
			} else {
				f.nalus = append(f.nalus, splitAnnexB(annexB)...)
			}
		}
		if f.complete {
			if i, ok := index[frameKey(f.nalus)]; ok {
				f.clip = i
			}
		}
		f.key = frame{nalus: f.nalus}.keyframe()
		frames = append(frames, f)
	}
	start := 0
	for i := 1; i <= len(sorted); i++ {
		if i == len(sorted) || sorted[i].ts != sorted[start].ts || sorted[i-1].marker {
			var prev *rxPacket
			if start > 0 {
				prev = &sorted[start-1]
			}
			flush(sorted[start:i], prev)
			start = i
		}
	}

	// Due times: suffix minimum of first arrivals.
	var due time.Time
	for i := len(frames) - 1; i >= 0; i-- {
		if due.IsZero() || frames[i].first.Before(due) {
			due = frames[i].first
		}
		frames[i].due = due
	}
	decodable := false
	for i := range frames {
		f := &frames[i]
		f.onTime = f.complete && f.done.Sub(f.due) <= playout
		switch {
		case !f.onTime:
			decodable = false
		case f.key:
			decodable = true
		}
		f.usable = decodable
	}
	return frames
}

// lossReport sums up frames [from, to) of a continuous stream (one
// publisher, timestamps advancing 3000 per frame).
type lossReport struct {
	expected, received, complete, onTime, usable int
	wrongContent                                 []string
	lateness                                     []time.Duration // done-due of complete frames
}

func (r lossReport) pct(n int) float64 { return 100 * float64(n) / float64(max(r.expected, 1)) }

func (r lossReport) String() string {
	sort.Slice(r.lateness, func(i, j int) bool { return r.lateness[i] < r.lateness[j] })
	q := func(p float64) time.Duration {
		if len(r.lateness) == 0 {
			return 0
		}
		return r.lateness[min(len(r.lateness)-1, int(p*float64(len(r.lateness))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("%d frames sent, %d reached the viewer (%.1f%%), %d complete (%.1f%%), %d complete within the playout delay (%.1f%%), %d decodable (%.1f%%); completion after due p50 %v p95 %v p99 %v max %v",
		r.expected, r.received, r.pct(r.received), r.complete, r.pct(r.complete), r.onTime, r.pct(r.onTime), r.usable, r.pct(r.usable),
		q(0.5), q(0.95), q(0.99), q(1))
}

// report checks frames whose due time is in [from, until) against the clip:
// each complete frame must be byte for byte the clip access unit its
// timestamp says (frame k0 at timestamp ts0), and frames that never
// arrived at all are counted from timestamp gaps.
func report(c testClip, frames []rxFrame, from, until time.Time) lossReport {
	var r lossReport
	// Anchor: the first complete keyframe tells which clip frame is where.
	k0, ts0 := -1, uint32(0)
	for _, f := range frames {
		if f.complete && f.key && f.clip >= 0 {
			k0, ts0 = f.clip, f.ts
			break
		}
	}
	prevTS, have := uint32(0), false
	for _, f := range frames {
		if f.due.Before(from) || !f.due.Before(until) {
			continue
		}
		if have {
			if gap := frameSteps(prevTS, f.ts); gap > 1 {
				r.expected += gap - 1 // frames with no packet at all
			}
		}
		prevTS, have = f.ts, true
		r.expected++
		r.received++
		if f.complete {
			r.complete++
			r.lateness = append(r.lateness, f.done.Sub(f.due))
			want := -1
			if k0 >= 0 {
				n := frameSteps(ts0, f.ts)
				want = ((k0+n)%len(c.video) + len(c.video)) % len(c.video)
			}
			if want < 0 || f.clip != want || !sameNALUs(f.nalus, sentNALUs(c.video[want].Data)) {
				r.wrongContent = append(r.wrongContent, fmt.Sprintf("ts %d: got clip frame %d, want %d", f.ts, f.clip, want))
			}
		}
		if f.onTime {
			r.onTime++
		}
		if f.usable {
			r.usable++
		}
	}
	return r
}

// frameSteps is how many 30 fps frames timestamp b is after a (negative if
// before): pion advances 2999 or 3000 ticks per clip frame.
func frameSteps(a, b uint32) int {
	return int(math.Round(float64(int32(b-a)) / 3000))
}
