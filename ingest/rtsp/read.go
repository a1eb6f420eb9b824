package rtsp

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// output is the RTSP side of one relay path: the description and the
// gortsplib stream its players set up. Media goes to each player through
// its own relay readers (see player), which start it on a keyframe and
// resume it at the next one after a loss: one reader shared by every
// player would start a player that joins later mid-GOP, on frames that
// reference pictures it never got.
type output struct {
	s      *Server
	path   string
	st     *relay.Stream
	stream *gortsplib.ServerStream

	// tracks pairs each relay track with its media in the description.
	tracks []outTrack

	mu      sync.Mutex
	refs    int
	linger  *time.Timer
	closed  bool
	quit    chan struct{}
	stopped chan struct{}
}

// acquire returns the output of path, creating it for a live stream. With
// ref, the caller (a player's session) holds it until release.
func (s *Server) acquire(path string, ref bool) (*output, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.outs[path]
	if o == nil {
		st, ok := s.p.Hub.Get(path)
		if !ok || !st.Live() {
			return nil, fmt.Errorf("%w: %s is not live", relay.ErrNotFound, path)
		}
		var err error
		if o, err = s.newOutput(path, st); err != nil {
			return nil, err
		}
		s.outs[path] = o
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if ref {
		o.refs++
		if o.linger != nil {
			o.linger.Stop()
			o.linger = nil
		}
	} else if o.refs == 0 && o.linger == nil {
		// DESCRIBE alone (a probe): keep it a while for the SETUP to come.
		o.linger = time.AfterFunc(s.p.Linger, o.closeIfIdle)
	}
	return o, nil
}

// payloadType of each codec in the RTSP description.
func formatFor(info relay.TrackInfo) format.Format {
	switch strings.ToLower(info.Codec.MimeType) {
	case strings.ToLower(codec.MimeH264):
		sps, pps := codec.H264SpropParameterSets(info.Codec.Fmtp)
		return &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps, PPS: pps}
	case strings.ToLower(codec.MimeVP8):
		return &format.VP8{PayloadTyp: 97}
	case strings.ToLower(codec.MimeVP9):
		return &format.VP9{PayloadTyp: 98}
	case strings.ToLower(codec.MimeAV1):
		return &format.AV1{PayloadTyp: 99}
	case strings.ToLower(codec.MimeOpus):
		ch := int(info.Codec.Channels)
		if ch <= 0 {
			ch = 2
		}
		return &format.Opus{PayloadTyp: 111, ChannelCount: ch}
	}
	return nil
}

// newOutput builds the description and attaches the relay readers. Caller
// holds s.mu.
func (s *Server) newOutput(path string, st *relay.Stream) (*output, error) {
	var pairs []outTrack
	desc := &description.Session{Title: path}
	for _, t := range st.Tracks() {
		f := formatFor(t.Info())
		if f == nil {
			continue
		}
		typ := description.MediaTypeVideo
		if t.Info().Kind == codec.Audio {
			typ = description.MediaTypeAudio
		}
		m := &description.Media{Type: typ, Formats: []format.Format{f}}
		desc.Medias = append(desc.Medias, m)
		pairs = append(pairs, outTrack{t: t, m: m})
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s has no track RTSP can carry", path)
	}
	o := &output{s: s, path: path, st: st, tracks: pairs, quit: make(chan struct{}), stopped: make(chan struct{})}
	o.stream = &gortsplib.ServerStream{Server: s.srv, Desc: desc}
	if err := o.stream.Initialize(); err != nil {
		return nil, err
	}
	go o.watch()
	s.log.Info("rtsp output started", "stream", path, "tracks", len(pairs))
	return o, nil
}

// watch closes the output when its relay stream ends.
func (o *output) watch() {
	defer close(o.stopped)
	select {
	case <-o.st.Done():
		o.close()
	case <-o.quit:
	}
}

// outTrack is one relay track and the media that carries it.
type outTrack struct {
	t *relay.Track
	m *description.Media
}

// play attaches a player's relay readers, one per track it set up. Each
// starts on a keyframe: from the relay's GOP cache when it has one, else
// at the next keyframe, which the reader asks the publisher for (RTMP and
// RTSP publishers cannot be asked: the player waits for their GOP).
// Packets the session takes before gortsplib starts its writer wait in
// the session's queue.
func (o *output) play(ss *gortsplib.ServerSession) (*player, error) {
	setup := map[*description.Media]bool{}
	for _, m := range ss.Medias() {
		setup[m] = true
	}
	p := &player{}
	for _, ot := range o.tracks {
		if !setup[ot.m] {
			continue
		}
		info := ot.t.Info()
		k := &playerSink{ss: ss, media: ot.m, pt: ot.m.Formats[0].PayloadType(),
			mime: info.Codec.MimeType, video: info.Kind == codec.Video}
		r, err := o.st.AddReader(ot.t, k)
		if err != nil {
			p.close()
			return nil, err
		}
		k.reader.Store(r)
		p.readers = append(p.readers, r)
		p.sinks = append(p.sinks, k)
		if k.video {
			r.RequestKeyframe()
		}
	}
	if len(p.readers) == 0 {
		return nil, errors.New("no track set up")
	}
	return p, nil
}

// release drops a player's hold; the last one starts the linger.
func (o *output) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refs--
	if o.refs <= 0 && !o.closed && o.linger == nil {
		o.linger = time.AfterFunc(o.s.p.Linger, o.closeIfIdle)
	}
}

func (o *output) closeIfIdle() {
	o.mu.Lock()
	idle := o.refs <= 0
	o.mu.Unlock()
	if idle {
		o.close()
	}
}

// close ends the players' sessions (which detach their readers).
func (o *output) close() {
	o.s.mu.Lock()
	if o.s.outs[o.path] == o {
		delete(o.s.outs, o.path)
	}
	o.s.mu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	if o.linger != nil {
		o.linger.Stop()
	}
	o.mu.Unlock()
	close(o.quit)
	o.stream.Close()
	o.s.log.Info("rtsp output stopped", "stream", o.path)
}

// player is one PLAY session's relay readers.
type player struct {
	readers []*relay.Reader
	sinks   []*playerSink
}

// pause holds the player's media: a keyframe sent while the session has
// no writer would be lost, and what follows it is undecodable.
func (p *player) pause() {
	for _, k := range p.sinks {
		k.paused.Store(true)
	}
}

// resume makes a paused player start again on a keyframe.
func (p *player) resume() {
	for i, k := range p.sinks {
		k.started.Store(false)
		k.paused.Store(false)
		if k.video {
			p.readers[i].RequestKeyframe()
		}
	}
}

func (p *player) close() {
	for _, r := range p.readers {
		r.Close()
	}
}

// playerSink writes one track's relay packets to one player's session,
// whose queue takes them without blocking. Video passes from a keyframe
// on: the relay reader starts there, and after the session's queue
// overflowed (a slow player) the sink waits for the next one.
type playerSink struct {
	ss      *gortsplib.ServerSession
	media   *description.Media
	pt      uint8
	mime    string
	video   bool
	reader  atomic.Pointer[relay.Reader] // set once AddReader returned
	started atomic.Bool
	paused  atomic.Bool

	// The sink numbers what it writes itself: packets it leaves out
	// (padding, frames before a keyframe, a pause) then leave no gap that
	// a player would count as lost.
	mu  sync.Mutex
	seq uint16
}

func (k *playerSink) WriteRTP(h *rtp.Header, payload []byte) error {
	// A WebRTC publisher's padding-only packets (bandwidth probes) carry
	// no media; RTSP players reject them ("Empty H.264 RTP packet").
	if k.paused.Load() || len(payload) == 0 {
		return nil
	}
	if k.video && !k.started.Load() {
		if !codec.IsKeyframe(k.mime, payload) {
			return nil
		}
		k.started.Store(true)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: h.Marker, PayloadType: k.pt,
		SequenceNumber: k.seq, Timestamp: h.Timestamp}, Payload: payload}
	err := k.ss.WritePacketRTP(k.media, pkt)
	if err == nil {
		k.seq++
	} else {
		if r := k.reader.Load(); k.video && k.started.Swap(false) && r != nil {
			r.RequestKeyframe()
		}
	}
	return err
}

// WriteSenderReport implements relay.Sink: gortsplib sends the session's
// own reports.
func (k *playerSink) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }

// KeyframeCadence implements relay.CadenceSink: a player joining later, or
// resuming after a loss, waits for the next keyframe, so the relay keeps
// the publisher's GOP bounded while someone plays over RTSP.
func (k *playerSink) KeyframeCadence() bool { return k.video }
