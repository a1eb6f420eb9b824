package recorder

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/recorder/segmenter"
	"github.com/livegate/livegate/relay"
)

// packet is one RTP packet or sender report on its way from a relay
// worker to the recording's writer goroutine.
type packet struct {
	track   int
	h       rtp.Header
	payload []byte // shared, read-only (the relay never modifies it)
	at      time.Time
	sr      bool
	ntp     uint64
	rtpTime uint32
}

// recording is one active recording: a relay reader per track feeding a
// bounded queue, and one goroutine that segments and spools.
type recording struct {
	m       *Manager
	r       *rec
	stream  *relay.Stream
	readers []*relay.Reader
	queue   chan packet
	dropped atomic.Uint64

	stopOnce sync.Once
	stopCh   chan struct{}
	crash    atomic.Bool // abandon: exit without finishing (tests)
	done     chan struct{}
	gap      bool // a segment was lost: the next one is a discontinuity
}

// sink is the relay.Sink of one track. It never blocks: a full queue
// drops the packet (counted), and the segmenter then waits for the next
// keyframe, as after network loss.
type sink struct {
	rec   *recording
	track int
}

func (s sink) WriteRTP(h *rtp.Header, payload []byte) error {
	select {
	case s.rec.queue <- packet{track: s.track, h: *h, payload: payload, at: time.Now()}:
	default:
		s.rec.dropped.Add(1)
	}
	return nil
}

// KeyframeCadence implements relay.CadenceSink: segments are cut on
// keyframes, so the relay keeps the publisher's GOP bounded while a
// recording runs.
func (s sink) KeyframeCadence() bool { return true }

func (s sink) WriteSenderReport(ntp uint64, rtpTime uint32, _, _ uint32) error {
	select {
	case s.rec.queue <- packet{track: s.track, sr: true, ntp: ntp, rtpTime: rtpTime}:
	default:
	}
	return nil
}

func (a *recording) droppedCount() uint64 {
	if a == nil {
		return 0
	}
	return a.dropped.Load()
}

func newID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Start records the live stream at path until Stop, the stream's end, or
// Close. A publisher reconnecting within the grace period continues the
// same recording: the relay keeps the readers attached.
func (m *Manager) Start(path string) (Info, error) {
	st, ok := m.p.Hub.Get(path)
	if !ok {
		return Info{}, fmt.Errorf("%w: %s", relay.ErrNotFound, path)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Info{}, ErrClosed
	}
	for _, r := range m.recs {
		if r.active != nil && r.active.stream == st {
			in := m.infoLocked(r)
			m.mu.Unlock()
			return in, fmt.Errorf("%w: %s (%s)", ErrAlreadyRecording, path, r.man.ID)
		}
	}
	now := time.Now()
	id := newID(now)
	man := &Manifest{ID: id, Stream: path, Key: path + "/" + id + "/", Start: now}
	var tracks []relay.TrackInfo
	var rtracks []*relay.Track
	for _, t := range st.Tracks() {
		in := t.Info()
		tracks = append(tracks, in)
		rtracks = append(rtracks, t)
		if segmenter.Muxable(in.Codec.MimeType) {
			man.Tracks = append(man.Tracks, in.Codec.MimeType)
		}
	}
	r := &rec{dir: filepath.Join(m.p.SpoolDir, id), man: man}
	a := &recording{m: m, r: r, stream: st, queue: make(chan packet, m.p.QueuePackets),
		stopCh: make(chan struct{}), done: make(chan struct{})}
	seg, err := segmenter.New(segmenter.Params{Tracks: tracks, SegmentDuration: m.p.SegmentDuration,
		Out: a, Logger: m.log.With("recording", id, "stream", path),
		RequestKeyframe: func(i int) {
			if i < len(a.readers) {
				a.readers[i].RequestKeyframe()
			}
		}})
	if err != nil {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("recorder: %s: %w", path, err)
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("recorder: spool: %w", err)
	}
	if err := man.save(r.dir); err != nil {
		m.mu.Unlock()
		_ = os.RemoveAll(r.dir)
		return Info{}, fmt.Errorf("recorder: spool: %w", err)
	}
	r.active = a
	m.recs[id] = r
	m.wg.Add(1)
	m.mu.Unlock()

	for i, t := range rtracks {
		if !segmenter.Muxable(t.Info().Codec.MimeType) {
			a.readers = append(a.readers, nil)
			continue
		}
		rd, err := st.AddReader(t, sink{rec: a, track: i})
		if err != nil {
			m.log.Warn("recorder: cannot read track", "id", id, "track", i, "err", err)
			a.readers = append(a.readers, nil)
			continue
		}
		a.readers = append(a.readers, rd)
	}
	m.log.Info("recording started", "id", id, "stream", path, "tracks", man.Tracks)
	go a.run(seg)
	return m.Get(id)
}

func (a *recording) stop() {
	a.stopOnce.Do(func() { close(a.stopCh) })
	<-a.done
}

func (a *recording) abandon() {
	a.crash.Store(true)
	a.stop()
}

// run is the writer goroutine: it owns the segmenter.
func (a *recording) run(seg *segmenter.Segmenter) {
	defer a.m.wg.Done()
	defer close(a.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastDropped uint64
	write := func(p packet) {
		if p.sr {
			seg.WriteSenderReport(p.track, p.ntp, p.rtpTime)
			return
		}
		if err := seg.WriteRTP(p.track, &p.h, p.payload, p.at); err != nil {
			a.m.log.Error("recording: segment not stored", "id", a.r.man.ID, "err", err)
		}
	}
loop:
	for {
		select {
		case p := <-a.queue:
			write(p)
		case <-a.stream.Done():
			break loop
		case <-a.stopCh:
			break loop
		case <-tick.C:
			// Log drops once a second, not per packet.
			if d := a.dropped.Load(); d != lastDropped {
				a.m.log.Warn("recording fell behind; packets dropped", "id", a.r.man.ID, "dropped", d-lastDropped)
				lastDropped = d
			}
		}
	}
	for _, rd := range a.readers {
		if rd != nil {
			rd.Close()
		}
	}
	if a.crash.Load() {
		return
	}
	for { // what the readers had already queued
		select {
		case p := <-a.queue:
			write(p)
			continue
		default:
		}
		break
	}
	if err := seg.Flush(); err != nil {
		a.m.log.Error("recording: last segment not stored", "id", a.r.man.ID, "err", err)
	}
	a.m.finish(a.r)
}

// finish marks a recording ended and lets the uploaders complete it.
func (m *Manager) finish(r *rec) {
	m.mu.Lock()
	r.active = nil
	r.man.Finished = true
	r.man.End = time.Now()
	w := r.change(nil)
	in := m.infoLocked(r)
	m.mu.Unlock()
	if err := w.write(); err != nil {
		m.log.Error("recorder: cannot save manifest", "id", in.ID, "err", err)
	}
	m.log.Info("recording stopped", "id", in.ID, "stream", in.Stream, "duration", in.Duration, "segments", in.Segments)
	m.kick()
}

// WriteInit stores an init segment in the spool (segmenter.Output).
func (a *recording) WriteInit(name string, data []byte) error {
	return a.spool(FileInfo{Name: name, Size: int64(len(data))}, data, true)
}

// WriteSegment stores a media segment in the spool (segmenter.Output).
func (a *recording) WriteSegment(s *segmenter.Segment) error {
	f := FileInfo{Name: fmt.Sprintf("seg_%06d.m4s", s.Seq), Size: int64(len(s.Data)), Init: s.Init,
		Start: s.Start.Seconds(), Duration: s.Duration.Seconds(), Discontinuity: a.gap}
	return a.spool(f, s.Data, false)
}

// spool writes a file, then records it in the manifest. A failed write
// (disk full) loses this file only: it is reported and recording goes on.
func (a *recording) spool(f FileInfo, data []byte, init bool) error {
	m := a.m
	err := m.reserveSpool(int64(len(data)))
	if err == nil {
		if err = m.p.writeFile(filepath.Join(a.r.dir, f.Name), data); err != nil {
			m.spoolBytes.Add(-int64(len(data)))
		}
	}
	if err != nil {
		m.spoolErrors.Add(1)
		a.gap = true
		m.mu.Lock()
		w := a.r.change(&journalOp{Op: "error",
			Error: fmt.Sprintf("%s: spool write failed: %v", time.Now().UTC().Format(time.RFC3339), err)})
		m.mu.Unlock()
		_ = w.write()
		return fmt.Errorf("recorder: spool %s: %w", f.Name, err)
	}
	a.gap = false
	op := journalOp{Op: "seg", File: &f}
	if init {
		op.Op = "init"
	}
	m.mu.Lock()
	w := a.r.change(&op)
	m.mu.Unlock()
	m.kick()
	if err := w.write(); err != nil {
		return fmt.Errorf("recorder: manifest: %w", err)
	}
	return nil
}
