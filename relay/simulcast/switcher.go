package simulcast

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
)

// Per-viewer layer choice.
//
// A Switcher is one WebRTC viewer's reader of a simulcast track. It reads
// one of the track's layer tracks (relay.Track.Layers) at a time through an
// ordinary relay reader, and gives the viewer's sink one stream: when the
// layer the viewer should get changes, it opens a reader on the target
// layer, asks that layer for a keyframe, keeps forwarding the current layer
// until the keyframe arrives and switches at its first packet, continuing
// the output's sequence numbers, timestamps (aligned with the layers'
// sender reports) and VP8/VP9 picture numbers. The old reader is closed
// then. The viewer's NACKs are answered from the current layer's history,
// its keyframe requests go to the current layer.
//
// Which layer: see chooser. Its input is Feedback, pushed by whichever
// transport serves the viewer; the transports know nothing else of this.

// SwitcherParams configures a Switcher.
type SwitcherParams struct {
	Stream *relay.Stream
	Track  *relay.Track // the simulcast track (Track.HasLayers)
	Sink   relay.Sink   // the viewer's; may be a relay.BatchSink
	// Layer pins a layer (?layer=): a rid, low, mid, high or an index from
	// the lowest (0). Empty: chosen from the viewer's feedback.
	Layer  string
	Logger *slog.Logger
	// Tick is how often the choice is checked besides feedback (default
	// 250 ms): a layer the publisher paused must be left without feedback.
	Tick time.Duration
	// Prober, if it can probe, is asked to probe before each move up.
	Prober Prober
	// StartBitrate is an estimate of the viewer's link known when it
	// starts (its previous session's, see Remembered); 0: none, the viewer
	// starts on the top layer.
	StartBitrate float64
}

// minDwell keeps a viewer on a layer it just switched to for a moment
// (unless that layer stops): estimates right after a switch are noisy.
const minDwell = time.Second

// rerequest is how long a switch waits for the target layer's keyframe
// before asking for one again (the request or the keyframe may be lost).
const rerequest = 500 * time.Millisecond

// Switcher is one viewer's reader of a simulcast track.
type Switcher struct {
	p     SwitcherParams
	batch relay.BatchSink
	clock uint32
	mime  string
	done  chan struct{}
	wg    sync.WaitGroup

	mu           sync.Mutex
	closed       bool
	ch           chooser
	cur, pend    *layerReader
	seqOff       uint16
	tsOff        uint32
	switchSeq    uint16 // input sequence number the current layer started at
	switchOut    uint16 // its output sequence number
	lastOut      rtp.Header
	lastOutAt    time.Time
	haveOut      bool
	lastSwitch   time.Time
	num          numbering
	scratch      []byte
	hdr          rtp.Header
	packets      uint32
	octets       uint32
	switches     int
	probes       int
	probesFailed int
	// NACKed packets since winPackets: a loss signal faster than receiver
	// reports (a second apart), so a try of a layer the link cannot carry
	// ends sooner.
	nacked     int
	winPackets uint32
	winAt      time.Time
}

// nackWindow is how often NACKs are weighed against packets sent.
const nackWindow = 500 * time.Millisecond

// layerReader is the Switcher's relay sink for one layer track.
type layerReader struct {
	s      *Switcher
	track  *relay.Track
	rid    string
	reader *relay.Reader // guarded by s.mu; nil until AddReader returned
	dead   bool          // left: close reader when it is set
	askAt  time.Time     // last keyframe request for a switch to it

	srNTP  uint64
	srRTP  uint32
	haveSR bool
}

// NewSwitcher starts a viewer's reader of a simulcast track on the layer
// that fits (the top one until the viewer's feedback says otherwise, or
// the pinned one).
func NewSwitcher(p SwitcherParams) (*Switcher, error) {
	if p.Stream == nil || p.Track == nil || p.Sink == nil {
		return nil, errors.New("simulcast: switcher needs a stream, a track and a sink")
	}
	if !ValidPin(p.Layer) {
		return nil, errors.New("simulcast: a layer is named by a rid, low, mid, high or a number")
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Tick <= 0 {
		p.Tick = 250 * time.Millisecond
	}
	info := p.Track.Info()
	s := &Switcher{p: p, clock: info.Codec.ClockRate, mime: info.Codec.MimeType,
		done: make(chan struct{}), ch: newChooser(p.Layer)}
	s.ch.probing = p.Prober != nil && p.Prober.CanProbe()
	if p.Layer == "" {
		s.ch.start = p.StartBitrate
	}
	if s.clock == 0 {
		s.clock = 90000
	}
	s.batch, _ = p.Sink.(relay.BatchSink)
	if err := s.evaluate(); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

func (s *Switcher) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.p.Tick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.weighNACKs()
			if err := s.evaluate(); err != nil {
				s.p.Logger.Debug("simulcast: layer switch failed", "err", err)
			}
		}
	}
}

// Close detaches the viewer. It is idempotent.
func (s *Switcher) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var rs []*relay.Reader
	for _, lr := range []*layerReader{s.cur, s.pend} {
		if lr != nil {
			lr.dead = true
			if lr.reader != nil {
				rs = append(rs, lr.reader)
			}
		}
	}
	s.cur, s.pend = nil, nil
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
	for _, r := range rs {
		r.Close()
	}
}

// weighNACKs turns the share of packets the viewer NACKed over the last
// nackWindow into loss feedback when it is high.
func (s *Switcher) weighNACKs() {
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.winAt) < nackWindow {
		s.mu.Unlock()
		return
	}
	sent, nacked := int(s.packets-s.winPackets), s.nacked
	s.winPackets, s.nacked, s.winAt = s.packets, 0, now
	s.mu.Unlock()
	if sent >= 20 && float64(nacked) > lossDown*float64(sent) {
		s.Feedback(Feedback{Loss: min(float64(nacked)/float64(sent), 1)})
	}
}

// Feedback takes what the viewer's transport learned about its reception.
func (s *Switcher) Feedback(fb Feedback) {
	tracks, infos := s.p.Track.Layers()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	cur := -1
	if s.cur != nil {
		cur = indexOf(tracks, s.cur.track)
	}
	before := s.ch.cap
	now := time.Now()
	s.ch.feedback(now, fb, cur, infos)
	probe := s.ch.takeProbe()
	switch fb.Probe {
	case ProbeCarried:
		s.probes++
	case ProbeFailed:
		s.probes++
		s.probesFailed++
	}
	s.mu.Unlock()
	if fb.Probe != NoProbe {
		s.p.Logger.Debug("simulcast: probe", "carried", fb.Probe == ProbeCarried, "delivered", int(fb.Bitrate))
	}
	if probe > 0 && !s.p.Prober.Probe(probe) {
		s.mu.Lock()
		s.ch.cannotProbe(now, len(infos))
		s.mu.Unlock()
	}
	s.mu.Lock()
	changed := s.ch.cap != before
	s.mu.Unlock()
	if fb.Bitrate > 0 || changed {
		if err := s.evaluate(); err != nil {
			s.p.Logger.Debug("simulcast: layer switch failed", "err", err)
		}
	}
}

func indexOf(tracks []*relay.Track, t *relay.Track) int {
	for i, x := range tracks {
		if x == t {
			return i
		}
	}
	return -1
}

// evaluate starts a switch when the viewer should get another layer.
func (s *Switcher) evaluate() error {
	now := time.Now()
	tracks, infos := s.p.Track.Layers()
	var want *relay.Track
	var rid string
	var closeRs []*relay.Reader
	var ask *relay.Reader

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if len(tracks) == 0 {
		// No layer described (yet: the publisher just started; or any
		// more: a publisher without simulcast continued the stream): read
		// the track itself, which carries the top layer.
		onTrack := func(lr *layerReader) bool { return lr != nil && lr.track == s.p.Track }
		if !onTrack(s.cur) && !onTrack(s.pend) {
			if s.pend != nil {
				closeRs = s.dropLocked(s.pend, closeRs)
				s.pend = nil
			}
			want = s.p.Track
		}
	} else {
		cur := -1
		if s.cur != nil {
			cur = indexOf(tracks, s.cur.track)
		}
		target := s.ch.choose(now, infos, cur)
		curStopped := cur < 0 || !infos[cur].Active
		switch {
		case target < 0:
		case s.cur != nil && s.cur.track == tracks[target]:
			if s.pend != nil { // the viewer should stay after all
				closeRs = s.dropLocked(s.pend, closeRs)
				s.pend = nil
			}
		case s.pend != nil && s.pend.track == tracks[target]:
			if s.pend.reader != nil && now.Sub(s.pend.askAt) >= rerequest {
				s.pend.askAt = now
				ask = s.pend.reader
			}
		case !curStopped && now.Sub(s.lastSwitch) < minDwell:
		default:
			if s.pend != nil {
				closeRs = s.dropLocked(s.pend, closeRs)
				s.pend = nil
			}
			want, rid = tracks[target], infos[target].RID
			s.p.Logger.Debug("simulcast: viewer switching layer", "to", rid, "current_stopped", curStopped,
				"estimate", int(s.ch.estimate), "loss", s.ch.lastLoss, "cap", s.ch.cap)
		}
	}
	var lr *layerReader
	if want != nil {
		lr = &layerReader{s: s, track: want, rid: rid, askAt: now}
		s.pend = lr
	}
	s.mu.Unlock()

	for _, r := range closeRs {
		r.Close()
	}
	if ask != nil {
		ask.RequestKeyframe()
	}
	if lr == nil {
		return nil
	}
	// The new reader starts at a keyframe: a fresh one it asks the layer
	// for, or the layer's cached GOP (which the switch skips: it is older
	// than what the viewer already saw, see packet).
	r, err := s.p.Stream.AddReader(want, lr)
	if err != nil {
		s.mu.Lock()
		if s.pend == lr {
			s.pend = nil
		}
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	lr.reader = r
	dead := lr.dead
	s.mu.Unlock()
	if dead {
		r.Close()
		return nil
	}
	r.RequestKeyframe()
	return nil
}

// dropLocked abandons layer reader lr, adding its relay reader to closeRs.
func (s *Switcher) dropLocked(lr *layerReader, closeRs []*relay.Reader) []*relay.Reader {
	lr.dead = true
	if lr.reader != nil {
		closeRs = append(closeRs, lr.reader)
	}
	return closeRs
}

// noFlush is the Flusher of a packet that was not queued.
type noFlush struct{}

func (noFlush) Flush(int) {}

// WriteRTP implements relay.Sink (NACK answers, and workers of a sink that
// does not batch).
func (lr *layerReader) WriteRTP(h *rtp.Header, payload []byte) error {
	_, err := lr.s.packet(lr, -1, h, payload)
	return err
}

// QueueRTP implements relay.BatchSink.
func (lr *layerReader) QueueRTP(worker int, h *rtp.Header, payload []byte) (relay.Flusher, error) {
	return lr.s.packet(lr, worker, h, payload)
}

// WriteSenderReport implements relay.Sink: the layer's reports align
// layers at a switch; the current layer's go to the viewer.
func (lr *layerReader) WriteSenderReport(ntp uint64, rtpTime uint32, _, _ uint32) error {
	s := lr.s
	s.mu.Lock()
	lr.srNTP, lr.srRTP, lr.haveSR = ntp, rtpTime, true
	forward := lr == s.cur && s.haveOut && !s.closed
	out, packets, octets := rtpTime+s.tsOff, s.packets, s.octets
	s.mu.Unlock()
	if !forward {
		return nil
	}
	return s.p.Sink.WriteSenderReport(ntp, out, packets, octets)
}

// packet takes one packet of a layer reader: forwarded if from the
// current layer, or the switch point if it starts a fresh keyframe of the
// pending one. worker < 0: write at once.
func (s *Switcher) packet(lr *layerReader, worker int, h *rtp.Header, payload []byte) (relay.Flusher, error) {
	now := time.Now()
	var closeR, ask *relay.Reader
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		if closeR != nil {
			closeR.Close() // safe from a delivery: workers hold no track lock
		}
		if ask != nil {
			ask.RequestKeyframe()
		}
	}()
	if s.closed || lr.dead {
		return noFlush{}, nil
	}
	if lr == s.pend {
		ks, _, _ := keyStart(s.mime, payload)
		if !ks {
			return noFlush{}, nil
		}
		ts, fresh := s.outTimestamp(lr, h.Timestamp, now)
		if !fresh {
			// A cached keyframe older than what the viewer has seen:
			// wait for the one asked for.
			if lr.reader != nil && now.Sub(lr.askAt) >= rerequest {
				lr.askAt, ask = now, lr.reader
			}
			return noFlush{}, nil
		}
		old := s.cur
		if s.haveOut {
			s.seqOff = s.lastOut.SequenceNumber + 1 - h.SequenceNumber
			s.tsOff = ts - h.Timestamp
		}
		s.num.rebase(fieldsOf(s.mime, payload), payload)
		s.switchSeq = h.SequenceNumber
		s.switchOut = h.SequenceNumber + s.seqOff
		s.cur, s.pend = lr, nil
		s.lastSwitch = now
		s.switches++
		s.ch.switched(now)
		if old != nil {
			old.dead = true
			closeR = old.reader
			s.p.Logger.Info("viewer moved to another simulcast layer", "from", old.rid, "to", lr.rid)
		}
	}
	if lr != s.cur {
		return noFlush{}, nil
	}
	if h.SequenceNumber != s.switchSeq && !seqNewer(h.SequenceNumber, s.switchSeq) {
		return noFlush{}, nil // from before the switch: its output number is taken
	}
	out := &s.hdr
	*out = *h
	out.SequenceNumber += s.seqOff
	out.Timestamp += s.tsOff
	newest := !s.haveOut || seqNewer(out.SequenceNumber, s.lastOut.SequenceNumber)
	if newest {
		s.lastOut, s.lastOutAt, s.haveOut = *out, now, true
	}
	if f := fieldsOf(s.mime, payload); f != noFields {
		// Layer packets are shared by all their readers: rewrite a copy.
		s.scratch = append(s.scratch[:0], payload...)
		payload = s.scratch
		s.num.rewrite(f, payload, newest)
	}
	s.packets++
	s.octets += uint32(len(payload))
	if worker >= 0 && s.batch != nil {
		return s.batch.QueueRTP(worker, out, payload)
	}
	return noFlush{}, s.p.Sink.WriteRTP(out, payload)
}

// outTimestamp maps timestamp ts of layer lr to the output clock for a
// switch to it. Aligned with both layers' sender reports, it tells a
// keyframe from the layer's GOP cache (older than the output, fresh=false)
// from a new one. Without reports, the wall-clock time since the last
// forwarded packet is added.
func (s *Switcher) outTimestamp(lr *layerReader, ts uint32, now time.Time) (uint32, bool) {
	if !s.haveOut {
		return ts, true
	}
	clock := int64(s.clock)
	if f := s.cur; f != nil && f.haveSR && lr.haveSR {
		dNTP := int64(lr.srNTP - f.srNTP)
		if dNTP < 600<<32 && dNTP > -600<<32 {
			out := ts + f.srRTP - lr.srRTP + uint32(dNTP*clock>>32) + s.tsOff
			d := int64(int32(out - s.lastOut.Timestamp))
			if d > -clock/2 && d < 5*clock {
				if d < -clock/20 {
					return 0, false
				}
				if d <= 0 {
					out = s.lastOut.Timestamp + 1
				}
				return out, true
			}
		}
	}
	ticks := uint32(now.Sub(s.lastOutAt).Seconds() * float64(clock))
	return s.lastOut.Timestamp + max(ticks, 1), true
}

// RequestKeyframe forwards the viewer's PLI or FIR to the layer it gets.
func (s *Switcher) RequestKeyframe() {
	s.mu.Lock()
	var r *relay.Reader
	if s.cur != nil {
		r = s.cur.reader
	} else if s.pend != nil {
		r = s.pend.reader
	}
	s.mu.Unlock()
	if r != nil {
		r.RequestKeyframe()
	}
}

// Retransmit answers the viewer's NACK (output sequence numbers) from the
// current layer's history; packets from before the last switch are gone.
func (s *Switcher) Retransmit(seqs []uint16) {
	s.mu.Lock()
	if s.cur == nil || s.cur.reader == nil {
		s.mu.Unlock()
		return
	}
	r := s.cur.reader
	s.nacked += len(seqs)
	in := make([]uint16, 0, len(seqs))
	for _, q := range seqs {
		if q == s.switchOut || seqNewer(q, s.switchOut) {
			in = append(in, q-s.seqOff)
		}
	}
	s.mu.Unlock()
	// The retransmission comes back through the layer reader's WriteRTP
	// and is renumbered there, unless a switch happened meanwhile.
	r.Retransmit(in)
}

// State describes the viewer's layer, for logs and tests.
type State struct {
	Current  string // rid of the layer the viewer gets ("" for the track itself)
	Pending  string // rid of the layer it is switching to, "" if none
	Switches int
	Estimate float64 // bits per second, 0 if none
	Loss     float64 // last reported
	Probes   int     // probes before moves up, and how many failed
	Failed   int
}

// State reports the viewer's layer.
func (s *Switcher) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Switches: s.switches, Estimate: s.ch.estimate, Loss: s.ch.lastLoss, Probes: s.probes, Failed: s.probesFailed}
	if s.cur != nil {
		st.Current = s.cur.rid
	}
	if s.pend != nil {
		st.Pending = s.pend.rid
	}
	return st
}

// Remembered is the estimate of the viewer's link worth starting its next
// session with (StartBitrate): what the send side measured while the link
// held the viewer below the top layer; 0 if nothing.
func (s *Switcher) Remembered() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch.remembered()
}
