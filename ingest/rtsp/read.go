package rtsp

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// output is the RTSP side of one relay path: a gortsplib stream shared by
// every player, fed by one relay reader per track.
type output struct {
	s      *Server
	path   string
	st     *relay.Stream
	stream *gortsplib.ServerStream

	mu      sync.Mutex
	readers []*relay.Reader
	video   *relay.Reader
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
		sps, pps := frames.SpropParameterSets(info.Codec.Fmtp)
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
	type pair struct {
		t *relay.Track
		m *description.Media
	}
	var pairs []pair
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
		pairs = append(pairs, pair{t, m})
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s has no track RTSP can carry", path)
	}
	o := &output{s: s, path: path, st: st, quit: make(chan struct{}), stopped: make(chan struct{})}
	o.stream = &gortsplib.ServerStream{Server: s.srv, Desc: desc}
	if err := o.stream.Initialize(); err != nil {
		return nil, err
	}
	for _, pr := range pairs {
		sk := &sink{stream: o.stream, media: pr.m, pt: pr.m.Formats[0].PayloadType()}
		r, err := st.AddReader(pr.t, sk)
		if err != nil {
			o.closeReaders()
			o.stream.Close()
			return nil, err
		}
		o.readers = append(o.readers, r)
		if pr.t.Info().Kind == codec.Video && o.video == nil {
			o.video = r
		}
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

// played asks the publisher for a keyframe so that a player joining a
// running output starts soon (coalesced by the relay; RTMP and RTSP
// publishers ignore it).
func (o *output) played() {
	o.mu.Lock()
	v := o.video
	o.mu.Unlock()
	if v != nil {
		v.RequestKeyframe()
	}
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

func (o *output) closeReaders() {
	for _, r := range o.readers {
		r.Close()
	}
}

// close detaches the readers and ends the players' sessions.
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
	o.closeReaders()
	o.stream.Close()
	o.s.log.Info("rtsp output stopped", "stream", o.path)
}

// sink writes one track's relay packets to the RTSP stream. The stream
// queues them per player without blocking.
type sink struct {
	stream *gortsplib.ServerStream
	media  *description.Media
	pt     uint8
}

func (k *sink) WriteRTP(h *rtp.Header, payload []byte) error {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: h.Marker, PayloadType: k.pt,
		SequenceNumber: h.SequenceNumber, Timestamp: h.Timestamp}, Payload: payload}
	return k.stream.WritePacketRTP(k.media, pkt)
}

func (k *sink) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }
