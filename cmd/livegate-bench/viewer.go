package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
)

// steadyAfter is how long after its first video packet a viewer's latency
// samples count as steady state: before that it may be replaying the
// gateway's cached GOP, whose frames are up to a keyframe interval old.
const steadyAfter = time.Second

// viewerAPI builds the viewers' PeerConnections: loopback only, pion's
// default codecs, receiver reports and (if nack) NACK generation, as a
// browser would send. No TWCC or stats interceptors: the receive path
// should cost the load machine as little as possible. nacks counts the
// sequence numbers NACKed. replayWindow > 0 sets the SRTP replay window;
// 0 keeps rtcclient.LoopbackAPI's (1024, as libwebrtc's).
func viewerAPI(nack bool, nacks *atomic.Uint64, replayWindow uint) (*webrtc.API, error) {
	configure := func(m *webrtc.MediaEngine, reg *interceptor.Registry) error {
		if err := m.RegisterDefaultCodecs(); err != nil {
			return err
		}
		if nack {
			// Before the generator: its RTCP writer is then the counting one.
			reg.Add(rtcclient.NACKCounter{N: nacks, Sent: true})
			if err := webrtc.ConfigureNack(m, reg); err != nil {
				return err
			}
		}
		return webrtc.ConfigureRTCPReports(reg)
	}
	return rtcclient.Loopback{Configure: configure, ReplayWindow: replayWindow}.API()
}

// viewerConn is a viewer's transport: a pion PeerConnection or the light
// client's.
type viewerConn interface {
	// up reports whether the transport still works.
	up() bool
	// close ends the session (DELETE) and the transport.
	close(ctx context.Context) error
}

// pionConn is a viewer on a pion PeerConnection.
type pionConn struct{ sess *rtcclient.Session }

func (p pionConn) up() bool {
	return p.sess.PC.ConnectionState() == webrtc.PeerConnectionStateConnected
}

func (p pionConn) close(ctx context.Context) error { return p.sess.Close(ctx) }

// viewer is one WHEP session.
type viewer struct {
	id   int
	b    *bench
	conn viewerConn

	// Set by the HTTP round trip of the WHEP POST.
	postAt, answerAt time.Time
	connectedAt      time.Time // set before connected is closed

	connected chan struct{}
	connOnce  sync.Once
	down      chan struct{} // connection failed or closed
	downOnce  sync.Once

	videoPkts, audioPkts atomic.Uint64 // for progress

	mu      sync.Mutex // guards st
	st      viewerStats
	readers sync.WaitGroup
}

// viewerStats is what a viewer measured; the reader goroutines update it.
type viewerStats struct {
	firstVideo, firstKey time.Time
	video, audio         seqTracker
	haveSEI              bool
	seiFirst, seiMax     uint32
	seiFrames            uint64 // unique frames with a timing SEI
}

// postTimer records when a viewer's WHEP POST went out and was answered.
type postTimer struct {
	base http.RoundTripper
	v    *viewer
}

func (t *postTimer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost {
		return t.base.RoundTrip(r)
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	t.v.postAt, t.v.answerAt = start, time.Now()
	return resp, err
}

// openViewer connects one WHEP session with the chosen client and waits
// until it is connected.
func (b *bench) openViewer(ctx context.Context, id int) (*viewer, error) {
	if b.cfg.client == clientLite {
		return b.openLiteViewer(ctx, id)
	}
	return b.openPionViewer(ctx, id)
}

// openPionViewer connects one WHEP session on a pion PeerConnection and
// waits until it is connected.
func (b *bench) openPionViewer(ctx context.Context, id int) (*viewer, error) {
	v := &viewer{id: id, b: b, connected: make(chan struct{}), down: make(chan struct{})}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.connectTimeout)
	defer cancel()
	opts := rtcclient.Options{
		API:  b.viewerAPI,
		HTTP: &http.Client{Transport: &postTimer{base: b.transport, v: v}, Timeout: b.cfg.connectTimeout},
	}
	sess, err := rtcclient.Play(ctx, b.whepURL, opts, func(pc *webrtc.PeerConnection) error {
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			switch s {
			case webrtc.PeerConnectionStateConnected:
				v.connOnce.Do(func() {
					v.connectedAt = time.Now()
					close(v.connected)
				})
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				v.downOnce.Do(func() { close(v.down) })
			}
		})
		for _, tr := range pc.GetTransceivers() {
			// Reading RTCP runs the interceptors' RTCP path (sender
			// reports); it ends when the PeerConnection closes.
			rcv := tr.Receiver()
			v.readers.Add(1)
			go func() {
				defer v.readers.Done()
				buf := make([]byte, 1500)
				for {
					if _, _, err := rcv.Read(buf); err != nil {
						return
					}
				}
			}()
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			v.readers.Add(1)
			go func() {
				defer v.readers.Done()
				if tr.Kind() == webrtc.RTPCodecTypeVideo {
					v.readVideo(tr)
				} else {
					v.readAudio(tr)
				}
			}()
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	v.conn = pionConn{sess}
	fail := func(err error) (*viewer, error) {
		v.close()
		return nil, err
	}
	select {
	case <-v.connected:
		return v, nil
	case <-v.down:
		return fail(fmt.Errorf("connection %s before connecting", sess.PC.ConnectionState()))
	case <-ctx.Done():
		return fail(fmt.Errorf("not connected within %v (state %s)", b.cfg.connectTimeout, sess.PC.ConnectionState()))
	}
}

// close ends the session (DELETE, then close the transport) and waits
// briefly for its readers.
func (v *viewer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.conn.close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		v.b.closeErrors.Add(1)
	}
	done := make(chan struct{})
	go func() { v.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// readVideo is the pion video receive path: one reused buffer, the
// shared per-packet handling (onVideo); no depacketisation, no decoding.
func (v *viewer) readVideo(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1600)
	var (
		h  rtp.Header
		rx videoRx
	)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		hn, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		v.onVideo(&rx, &h, rtpPayload(buf[:n], &h, hn), now)
	}
}

func (v *viewer) readAudio(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1600)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if _, err := h.Unmarshal(buf[:n]); err != nil {
			continue
		}
		v.onAudio(&h)
	}
}

// rtpPayload is the payload of packet pkt whose header h (hn bytes) is
// parsed, without padding; empty if the padding length is bogus.
func rtpPayload(pkt []byte, h *rtp.Header, hn int) []byte {
	end := len(pkt)
	if h.Padding && end > hn {
		if p := int(pkt[end-1]); p <= end-hn {
			end -= p
		}
	}
	return pkt[hn:end]
}

// videoRx is one video stream's receive state beyond the viewer's stats:
// the SEI parser and the frame whose last packet is awaited.
type videoRx struct {
	seis     [][]byte
	parser   seiParser
	pendTS   uint32 // RTP timestamp of the last frame with a timing SEI
	pendSent int64  // its send time
	pending  bool
}

// onVideo is the per-packet video handling both clients share: a look at
// the NAL unit types (keyframe, timing SEI), sequence accounting, latency
// samples against now, the packet's arrival time. It returns how many
// sequence numbers were skipped just before this packet (for NACKs).
func (v *viewer) onVideo(rx *videoRx, h *rtp.Header, payload []byte, now time.Time) (gap int) {
	v.videoPkts.Add(1)
	var key bool
	key, rx.seis = scanH264(payload, rx.seis[:0])

	var seiLat, frameLat int64
	haveSEILat, haveFrameLat := false, false
	v.mu.Lock()
	st := &v.st
	if st.firstVideo.IsZero() {
		st.firstVideo = now
	}
	if key && st.firstKey.IsZero() {
		st.firstKey = now
	}
	steady := now.Sub(st.firstVideo) >= steadyAfter
	started, prev := st.video.started, st.video.highest
	if !st.video.add(h.SequenceNumber) {
		if started && st.video.highest > prev+1 {
			gap = int(st.video.highest - prev - 1)
		}
		for _, nal := range rx.seis {
			sent, counter, ok := rx.parser.parse(nal)
			if !ok {
				continue
			}
			if !st.haveSEI {
				st.haveSEI, st.seiFirst, st.seiMax = true, counter, counter
			}
			if int32(counter-st.seiFirst) < 0 {
				st.seiFirst = counter
			}
			if int32(counter-st.seiMax) > 0 {
				st.seiMax = counter
			}
			st.seiFrames++
			seiLat, haveSEILat = now.UnixNano()-sent, true
			rx.pendTS, rx.pendSent, rx.pending = h.Timestamp, sent, true
			break
		}
		if h.Marker && rx.pending && h.Timestamp == rx.pendTS {
			frameLat, haveFrameLat = now.UnixNano()-rx.pendSent, true
			rx.pending = false
		}
	}
	v.mu.Unlock()
	if haveSEILat || haveFrameLat {
		v.b.lat.add(now, haveSEILat, seiLat, haveFrameLat, frameLat, steady)
	}
	return gap
}

// onAudio is the per-packet audio handling both clients share.
func (v *viewer) onAudio(h *rtp.Header) {
	v.audioPkts.Add(1)
	v.mu.Lock()
	v.st.audio.add(h.SequenceNumber)
	v.mu.Unlock()
}

// snapshot copies what the viewer measured so far.
func (v *viewer) snapshot() viewerStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.st
}

// latSample is one latency measurement.
type latSample struct {
	at     int64 // arrival, UnixNano
	ns     int64
	steady bool
}

// latStore collects latency samples from every viewer.
type latStore struct {
	mu    sync.Mutex
	sei   []latSample // SEI packet arrival - send time
	frame []latSample // last packet of that frame (marker) arrival - send time
}

func (s *latStore) add(now time.Time, haveSEI bool, sei int64, haveFrame bool, frame int64, steady bool) {
	at := now.UnixNano()
	s.mu.Lock()
	if haveSEI {
		s.sei = append(s.sei, latSample{at: at, ns: sei, steady: steady})
	}
	if haveFrame {
		s.frame = append(s.frame, latSample{at: at, ns: frame, steady: steady})
	}
	s.mu.Unlock()
}

// seiSince returns the SEI latencies in ms recorded from index i on (steady
// ones only if steadyOnly) and the next index.
func (s *latStore) seiSince(i int, steadyOnly bool) ([]float64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []float64
	for _, x := range s.sei[min(i, len(s.sei)):] {
		if x.steady || !steadyOnly {
			out = append(out, float64(x.ns)/1e6)
		}
	}
	return out, len(s.sei)
}

// split returns the latencies in ms of samples that arrived before until:
// all, steady (each viewer's first second left out) and, of those, the
// ones that arrived from from on.
func split(samples []latSample, from, until int64) (all, steady, window []float64) {
	for _, x := range samples {
		if x.at > until {
			continue
		}
		v := float64(x.ns) / 1e6
		all = append(all, v)
		if x.steady {
			steady = append(steady, v)
			if x.at >= from {
				window = append(window, v)
			}
		}
	}
	return all, steady, window
}
