package rtmp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// job is one push: it runs sessions until stopped or the stream ends.
type job struct {
	m      *Manager
	id     string
	st     *relay.Stream
	url    *url.URL
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	info     Info
	sentPrev uint64 // bytes of finished sessions
	client   *gortmplib.Client
}

func (j *job) snapshot() Info {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := j.info
	in.BytesSent = j.sentPrev
	if j.client != nil {
		in.BytesSent += j.client.BytesSent()
	}
	return in
}

func (j *job) setState(state string, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.info.State = state
	if err != nil {
		j.info.LastError = err.Error()
	}
	if state == StateLive {
		j.info.ConnectedAt = time.Now().UTC()
	}
}

func (j *job) run(ctx context.Context) {
	defer close(j.done)
	backoff := j.m.p.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			j.mu.Lock()
			j.info.Reconnects++
			j.mu.Unlock()
		}
		began := time.Now()
		err := j.session(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errStreamDone):
			j.setState(StateEnded, nil)
			j.m.log.Info("rtmp push ended with its stream", "job", j.id, "stream", j.st.Path())
			if j.info.Rule {
				j.m.mu.Lock()
				delete(j.m.jobs, j.id)
				j.m.mu.Unlock()
			}
			return
		case errors.Is(err, ErrNoTranscoder), errors.Is(err, ErrNoH264):
			j.setState(StateFailed, err)
			j.m.log.Warn("rtmp push failed", "job", j.id, "err", err)
			if f := j.m.p.OnFailure; f != nil {
				f(j.snapshot(), false)
			}
			return
		}
		if time.Since(began) > j.m.p.MaxBackoff {
			backoff = j.m.p.MinBackoff // it ran well for a while: retry soon
		}
		j.setState(StateRetrying, err)
		if f := j.m.p.OnFailure; f != nil {
			f(j.snapshot(), true)
		}
		j.m.log.Warn("rtmp push dropped; reconnecting", "job", j.id, "stream", j.st.Path(), "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-j.st.Done():
			j.setState(StateEnded, nil)
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, j.m.p.MaxBackoff)
	}
}

// session connects once and pushes until an error.
func (j *job) session(ctx context.Context) error {
	select {
	case <-j.st.Done():
		return errStreamDone
	default:
	}
	var video, audio *relay.Track
	for _, t := range j.st.Tracks() {
		mime := t.Info().Codec.MimeType
		switch {
		case video == nil && strings.EqualFold(mime, codec.MimeH264):
			video = t
		case audio == nil && strings.EqualFold(mime, codec.MimeOpus):
			audio = t
		}
	}
	if video == nil {
		return ErrNoH264
	}
	j.mu.Lock()
	videoOnly := j.info.VideoOnly
	j.mu.Unlock()
	if videoOnly {
		audio = nil
	}
	vr, err := j.m.p.Frames.Subscribe(j.st, video)
	if err != nil {
		return errStreamDone
	}
	defer vr.Close()
	var ar *aacReader
	var asc *mpeg4audio.AudioSpecificConfig
	if audio != nil {
		if ar, err = j.m.acquireAAC(j.st, audio); err != nil {
			return err
		}
		defer j.m.releaseAAC(ar)
	}

	// Start at a keyframe with SPS/PPS; meanwhile the AAC config arrives.
	sps, pps := frames.SpropParameterSets(video.Info().Codec.Fmtp)
	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var first *frames.Frame
	for first == nil {
		select {
		case <-wait.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("no H.264 keyframe with SPS/PPS within 20 s")
		case <-vr.Done():
			return errStreamDone
		case f := <-vr.Frames():
			s, p := frames.H264ParamSets(f.Units)
			if s != nil {
				sps = s
			}
			if p != nil {
				pps = p
			}
			if f.Key && sps != nil && pps != nil {
				first = f
			}
		}
	}
	if ar != nil {
		if asc, err = ar.Config(wait); err != nil {
			return fmt.Errorf("audio transcoder: %w", err)
		}
	}

	j.setState(StateConnecting, nil)
	cctx, ccancel := context.WithTimeout(ctx, j.m.p.ConnectTimeout)
	defer ccancel()
	u := *j.url
	var pc *pumpConn
	c := &gortmplib.Client{URL: &u, Publish: true, TLSConfig: j.m.p.TLS,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			pc = newPumpConn(nc)
			return pc, nil
		}}
	if err := c.Initialize(cctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	j.mu.Lock()
	j.client = c
	j.mu.Unlock()
	defer func() {
		c.Close()
		j.mu.Lock()
		j.sentPrev += c.BytesSent()
		j.client = nil
		j.mu.Unlock()
	}()
	// The server's messages (acks, pings) are read on this goroutine,
	// between writes (see pumpConn); a read error ends the session.
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	readServer := func() error {
		for pc.readable() {
			if _, err := c.Read(); err != nil {
				return fmt.Errorf("server closed the connection: %w", err)
			}
		}
		return nil
	}
	nc := c.NetConn()
	// Closing the connection also ends a Read waiting for the rest of a
	// message when the job is stopped.
	defer context.AfterFunc(ctx, func() { _ = nc.Close() })()
	conn := &deadlineConn{c: c, nc: nc, timeout: j.m.p.WriteTimeout}

	vtrack := &gortmplib.Track{Codec: &rtmpcodecs.H264{SPS: sps, PPS: pps}}
	tracks := []*gortmplib.Track{vtrack}
	var atrack *gortmplib.Track
	if asc != nil {
		atrack = &gortmplib.Track{Codec: &rtmpcodecs.MPEG4Audio{Config: asc}}
		tracks = append(tracks, atrack)
	}
	if err := writeHeader(conn, sps, pps, asc, j.m.p.AudioBitrate, j.st); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	// Writer without Initialize: it then writes legacy FLV tags (track 0),
	// and the header above is ours (with onMetaData filled in).
	w := &gortmplib.Writer{Conn: conn, Tracks: tracks}
	j.setState(StateLive, nil)
	j.m.log.Info("rtmp push live", "job", j.id, "stream", j.st.Path())

	base := vr.Zero().Add(ptsDur(first.PTS, vr.ClockRate()))
	var lastV, lastA time.Duration = -1, -1
	writeVideo := func(f *frames.Frame) error {
		if s, _ := frames.H264ParamSets(f.Units); s != nil && string(s) != string(sps) {
			return errors.New("video parameters changed; reconnecting with the new ones")
		}
		d := vr.Zero().Add(ptsDur(f.PTS, vr.ClockRate())).Sub(base)
		if d < 0 || d <= lastV {
			return nil
		}
		lastV = d
		return w.WriteH264(vtrack, d, d, f.Units)
	}
	if err := writeVideo(first); err != nil {
		return err
	}
	var aacCh <-chan aacFrame
	if ar != nil {
		aacCh = ar.Frames()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-vr.Done():
			return errStreamDone
		case <-poll.C:
			if err := readServer(); err != nil {
				return err
			}
		case f := <-vr.Frames():
			if err := writeVideo(f); err != nil {
				return err
			}
		case a := <-aacCh:
			if a.At.IsZero() {
				continue
			}
			d := a.At.Sub(base)
			if d < 0 || d <= lastA {
				continue
			}
			lastA = d
			if err := w.WriteMPEG4Audio(atrack, d, a.AU); err != nil {
				return err
			}
		}
	}
}

func ptsDur(pts int64, clock int) time.Duration {
	return time.Duration(pts * int64(time.Second) / int64(clock))
}

// deadlineConn bounds every write, so a server that stops reading ends
// the session instead of blocking it.
type deadlineConn struct {
	c       *gortmplib.Client
	nc      net.Conn
	timeout time.Duration
}

func (d *deadlineConn) BytesReceived() uint64          { return d.c.BytesReceived() }
func (d *deadlineConn) BytesSent() uint64              { return d.c.BytesSent() }
func (d *deadlineConn) Read() (message.Message, error) { return d.c.Read() }
func (d *deadlineConn) Write(msg message.Message) error {
	_ = d.nc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.c.Write(msg)
}

// writeHeader sends onMetaData (size, frame rate, bitrates) and the
// decoder configurations.
func writeHeader(conn gortmplib.Conn, sps, pps []byte, asc *mpeg4audio.AudioSpecificConfig, audioBitrate int, st *relay.Stream) error {
	var s h264.SPS
	if err := s.Unmarshal(sps); err != nil {
		return fmt.Errorf("SPS: %w", err)
	}
	meta := amf0.Object{
		{Key: "width", Value: float64(s.Width())},
		{Key: "height", Value: float64(s.Height())},
		{Key: "videocodecid", Value: float64(message.CodecH264)},
		{Key: "videodatarate", Value: videoKbps(st)},
	}
	if fps := s.FPS(); fps > 0 {
		meta = append(meta, amf0.ObjectEntry{Key: "framerate", Value: fps})
	} else {
		meta = append(meta, amf0.ObjectEntry{Key: "framerate", Value: float64(30)})
	}
	if asc != nil {
		meta = append(meta,
			amf0.ObjectEntry{Key: "audiocodecid", Value: float64(message.CodecMPEG4Audio)},
			amf0.ObjectEntry{Key: "audiodatarate", Value: float64(audioBitrate) / 1000},
			amf0.ObjectEntry{Key: "audiosamplerate", Value: float64(asc.SampleRate)},
			amf0.ObjectEntry{Key: "audiosamplesize", Value: float64(16)},
			amf0.ObjectEntry{Key: "stereo", Value: asc.ChannelCount == 2},
		)
	}
	meta = append(meta, amf0.ObjectEntry{Key: "encoder", Value: "livegate"})
	if err := conn.Write(&message.DataAMF0{ChunkStreamID: 4, MessageStreamID: 0x1000000,
		Payload: []any{"@setDataFrame", "onMetaData", meta}}); err != nil {
		return err
	}
	if err := conn.Write(&message.Video{ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000,
		Codec: message.CodecH264, IsKeyFrame: true, Type: message.VideoTypeConfig, AVCConfig: avcC(sps, pps, &s)}); err != nil {
		return err
	}
	if asc != nil {
		return conn.Write(&message.Audio{ChunkStreamID: message.AudioChunkStreamID, MessageStreamID: 0x1000000,
			Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100, Depth: message.AudioDepth16,
			IsStereo: true, AACType: message.AudioAACTypeConfig, AACConfig: asc})
	}
	return nil
}

// videoKbps is the publisher's average video bitrate in kbit/s since the
// stream began (0 if unknown).
func videoKbps(st *relay.Stream) float64 {
	stats := st.Stats()
	if stats.Uptime < 1 {
		return 0
	}
	for _, t := range stats.Tracks {
		if t.Kind == codec.Video {
			return math.Round(float64(t.BytesIn) * 8 / stats.Uptime / 1000)
		}
	}
	return 0
}

func avcC(sps, pps []byte, s *h264.SPS) *mp4.AVCDecoderConfiguration {
	return &mp4.AVCDecoderConfiguration{
		AnyTypeBox:                 mp4.AnyTypeBox{Type: mp4.BoxTypeAvcC()},
		ConfigurationVersion:       1,
		Profile:                    s.ProfileIdc,
		ProfileCompatibility:       sps[2],
		Level:                      s.LevelIdc,
		Reserved:                   0b111111,
		LengthSizeMinusOne:         3,
		Reserved2:                  0b111,
		NumOfSequenceParameterSets: 1,
		SequenceParameterSets:      []mp4.AVCParameterSet{{Length: uint16(len(sps)), NALUnit: sps}},
		NumOfPictureParameterSets:  1,
		PictureParameterSets:       []mp4.AVCParameterSet{{Length: uint16(len(pps)), NALUnit: pps}},
	}
}
