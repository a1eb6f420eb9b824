// Package rtmp ingests RTMP publishers (OBS, ffmpeg, encoders) into the
// relay: rtmp://HOST:1935/ROOM/NAME, the application being the room and
// the stream key the name. A token, when the gateway requires one, goes in
// the stream key's query: NAME?token=JWT. A refused publish (token, path,
// path already published) is answered with an RTMP error status carrying
// the reason (NetStream.Publish.Unauthorized or .BadName) before the
// client starts sending, so ffmpeg and OBS show why.
//
// H.264 is packetised once for RTP readers (parameter sets repeated in front
// of every IDR picture, as WebRTC decoders need them in band). AAC is
// transcoded once per stream to Opus by an ffmpeg subprocess so that WebRTC
// viewers get audio; without ffmpeg the stream is video-only and a warning
// is logged. Native Opus (enhanced RTMP) passes through. RTMP publishers
// cannot be asked for keyframes: the relay's GOP cache serves late viewers.
package rtmp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/ingest/internal/mediain"
	"github.com/livegate/livegate/internal/addrlimit"
	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay"
)

// Params configures the RTMP ingest server.
type Params struct {
	Hub *relay.Hub
	// Addr is the TCP listen address, e.g. ":1935".
	Addr string
	// Authorize, if set, decides whether a client may publish ROOM/NAME
	// with the token from the stream key's (or tcUrl's) "token" query
	// parameter. nil allows everyone.
	Authorize mediain.Authorizer
	// FFmpeg transcodes AAC to Opus: "" finds it in PATH, "-" disables
	// transcoding (AAC publishers are then video-only).
	FFmpeg string
	// AudioBitrate of the Opus track in bit/s (default 96000).
	AudioBitrate int
	// ReadTimeout ends a publisher that sends nothing for this long
	// (default 10 s).
	ReadTimeout time.Duration
	// MaxConns bounds concurrent connections (default 256).
	MaxConns int
	// MaxConnsPerIP bounds concurrent connections from one address
	// (default 8), so that one client's idle connections cannot take
	// every slot of MaxConns before tokened publishers arrive.
	MaxConnsPerIP int `flag:"rtmp-conns-per-ip" help:"concurrent RTMP connections from one address"`
	// HandshakeTimeout bounds the time from accepting a connection to its
	// publish request being authorized (default 5 s).
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
}

// Server accepts RTMP publishers.
type Server struct {
	p      Params
	ffmpeg string
	ln     net.Listener
	log    *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	perIP  addrlimit.Counter
	closed bool
	wg     sync.WaitGroup
}

// DefaultParams are the settings a zero Params field stands for.
func DefaultParams() Params {
	return Params{
		ReadTimeout:      10 * time.Second,
		MaxConns:         256,
		MaxConnsPerIP:    8,
		HandshakeTimeout: 5 * time.Second,
	}
}

// New binds p.Addr and starts accepting publishers; Close stops.
func New(p Params) (*Server, error) {
	d := DefaultParams()
	if p.Hub == nil {
		return nil, errors.New("rtmp ingest: no hub")
	}
	if p.ReadTimeout <= 0 {
		p.ReadTimeout = d.ReadTimeout
	}
	if p.MaxConns <= 0 {
		p.MaxConns = d.MaxConns
	}
	if p.MaxConnsPerIP <= 0 {
		p.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if p.HandshakeTimeout <= 0 {
		p.HandshakeTimeout = d.HandshakeTimeout
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp %q: %w", p.Addr, err)
	}
	s := &Server{p: p, ffmpeg: ffproc.Find(p.FFmpeg), ln: ln, log: p.Logger, conns: map[net.Conn]struct{}{}}
	if s.ffmpeg == "" {
		s.log.Warn("rtmp ingest: no ffmpeg; AAC audio of RTMP publishers is dropped (video-only for WebRTC viewers)")
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Conns is the number of open RTMP connections, for metrics.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, ends every connection and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		release, ok := s.admit(c)
		if !ok {
			_ = c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			defer func() {
				release()
				_ = c.Close()
			}()
			if err := s.serve(c); err != nil {
				s.log.Info("rtmp connection ended", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// admit counts c against MaxConns and its address's MaxConnsPerIP, or
// reports false when either is full or the server is closed. release
// uncounts it; the caller's goroutine for c is already counted in wg.
func (s *Server) admit(c net.Conn) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.p.MaxConns {
		return nil, false
	}
	releaseAddr, ok := s.perIP.Acquire(addrlimit.Key(c.RemoteAddr().String()), s.p.MaxConnsPerIP)
	if !ok {
		return nil, false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		releaseAddr()
	}, true
}

// serve handles one connection: handshake, connect, publish, media.
func (s *Server) serve(c net.Conn) error {
	// Until its publish is authorized a connection has only
	// HandshakeTimeout: it holds one of its address's few slots.
	_ = c.SetDeadline(time.Now().Add(s.p.HandshakeTimeout))
	sc := &serverConn{}
	if err := sc.handshake(c); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var path, owner string
	_, err := sc.accept(func(u *url.URL) error {
		room, name, err := relay.SplitPath(u.Path)
		if err != nil {
			return refuse(codeBadName, err)
		}
		path = room + "/" + name
		if s.p.Authorize != nil {
			ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			if owner, err = s.p.Authorize(room, name, u.Query().Get("token"), ip); err != nil {
				return refuse(codeUnauthorized, err)
			}
		}
		if st, ok := s.p.Hub.Get(path); ok && st.BusyFor(owner) {
			return refuse(codeBadName, fmt.Errorf("%w: %s", relay.ErrAlreadyLive, path))
		}
		return nil
	})
	if err != nil {
		return s.refused(c, path, err)
	}
	_ = c.SetDeadline(time.Now().Add(s.p.ReadTimeout))
	r := &gortmplib.Reader{Conn: sc}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("reading tracks: %w", err)
	}
	return s.publish(c, sc, r, path, owner)
}

// refused logs a refusal the client was told about and closes the
// connection so that the client reads the status: closing a socket with
// unread input resets it, and the reset can overtake the status.
func (s *Server) refused(c net.Conn, path string, err error) error {
	var re *refusedError
	if !errors.As(err, &re) {
		return err
	}
	s.log.Warn("rtmp publish refused", "stream", path, "remote", c.RemoteAddr().String(), "err", err)
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	return err
}

func (s *Server) publish(c net.Conn, sc *serverConn, r *gortmplib.Reader, path, owner string) error {
	var video, audio *gortmplib.Track
	var vcodec *rtmpcodecs.H264
	for _, t := range r.Tracks() {
		switch cd := t.Codec.(type) {
		case *rtmpcodecs.H264:
			if video == nil {
				video, vcodec = t, cd
			}
		case *rtmpcodecs.MPEG4Audio, *rtmpcodecs.Opus:
			if audio == nil {
				audio = t
			}
		}
	}
	if video == nil {
		return s.refused(c, path, sc.status(nil, refuse(codePublishFail, errors.New("no H.264 track: livegate takes H.264 over RTMP"))))
	}
	infos := []relay.TrackInfo{mediain.H264Info(vcodec.SPS, vcodec.PPS)}
	var aac *rtmpcodecs.MPEG4Audio
	if audio != nil {
		switch cd := audio.Codec.(type) {
		case *rtmpcodecs.MPEG4Audio:
			if s.ffmpeg == "" {
				s.log.Warn("rtmp publisher sends AAC but there is no ffmpeg to transcode it to Opus: video only", "stream", path)
				audio = nil
			} else {
				aac = cd
			}
		}
	}
	if audio != nil {
		infos = append(infos, mediain.OpusInfo())
	}
	pub, err := s.p.Hub.PublishAs(owner, path, infos, mediain.NopSource{})
	if err != nil {
		// Taken between the check at "publish" and now.
		code := codePublishFail
		if errors.Is(err, relay.ErrAlreadyLive) {
			code = codeBadName
		}
		return s.refused(c, path, sc.status(nil, refuse(code, err)))
	}
	defer pub.End("rtmp publisher left")
	// A takeover or the end of the stream closes the connection, which
	// ends the read loop below.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-pub.Superseded():
			_ = c.Close()
		case <-stop:
		}
	}()
	s.log.Info("rtmp publisher live", "stream", path, "remote", c.RemoteAddr().String(),
		"audio", audio != nil, "transcode", aac != nil)

	// gortmplib needs a callback for every track it announced.
	for _, t := range r.Tracks() {
		ignore(r, t)
	}
	var srs mediain.SenderReports
	h := mediain.NewH264(vcodec.SPS, vcodec.PPS)
	r.OnDataH264(video, func(pts, _ time.Duration, au [][]byte) {
		ts := uint32(pts * 90000 / time.Second)
		for _, p := range h.Packets(ts, au) {
			pub.WriteRTP(0, &p.Header, p.Payload)
		}
		srs.Maybe(pub, 0, pts, ts)
	})
	if audio != nil {
		var seq uint16
		write := func(pkt []byte, pts time.Duration, ts uint32) {
			hdr := rtp.Header{Version: 2, PayloadType: mediain.AudioPT, SequenceNumber: seq, Timestamp: ts, Marker: seq == 0}
			seq++
			pub.WriteRTP(1, &hdr, pkt)
			srs.Maybe(pub, 1, pts, ts)
		}
		if aac != nil {
			var clock mediain.OpusClock
			tc, err := mediain.StartAACToOpus(s.ffmpeg, aac.Config, s.p.AudioBitrate, s.log, func(pkt []byte, n int64) {
				pts, ts := clock.Next(n)
				write(pkt, pts, ts)
			})
			if err != nil {
				s.log.Warn("rtmp: cannot start the AAC->Opus transcoder: video only", "stream", path, "err", err)
			} else {
				defer tc.Close()
				r.OnDataMPEG4Audio(audio, func(pts time.Duration, au []byte) {
					clock.Start(pts)
					tc.Write(au)
				})
			}
		} else {
			r.OnDataOpus(audio, func(pts time.Duration, pkt []byte) {
				write(append([]byte(nil), pkt...), pts, uint32(pts*48000/time.Second))
			})
		}
	}
	for {
		_ = c.SetDeadline(time.Now().Add(s.p.ReadTimeout))
		if err := r.Read(); err != nil {
			select {
			case <-pub.Superseded():
				return errors.New("taken over by another publisher or the stream ended")
			default:
			}
			if strings.Contains(err.Error(), "use of closed network connection") {
				return nil
			}
			return err
		}
	}
}

// ignore registers a callback that drops the track's data.
func ignore(r *gortmplib.Reader, t *gortmplib.Track) {
	switch t.Codec.(type) {
	case *rtmpcodecs.AV1:
		r.OnDataAV1(t, func(time.Duration, [][]byte) {})
	case *rtmpcodecs.VP9:
		r.OnDataVP9(t, func(time.Duration, []byte) {})
	case *rtmpcodecs.H265:
		r.OnDataH265(t, func(time.Duration, time.Duration, [][]byte) {})
	case *rtmpcodecs.H264:
		r.OnDataH264(t, func(time.Duration, time.Duration, [][]byte) {})
	case *rtmpcodecs.Opus:
		r.OnDataOpus(t, func(time.Duration, []byte) {})
	case *rtmpcodecs.MPEG4Audio:
		r.OnDataMPEG4Audio(t, func(time.Duration, []byte) {})
	case *rtmpcodecs.MPEG1Audio:
		r.OnDataMPEG1Audio(t, func(time.Duration, []byte) {})
	case *rtmpcodecs.AC3:
		r.OnDataAC3(t, func(time.Duration, []byte) {})
	case *rtmpcodecs.G711:
		r.OnDataG711(t, func(time.Duration, []byte) {})
	case *rtmpcodecs.LPCM:
		r.OnDataLPCM(t, func(time.Duration, []byte) {})
	}
}
