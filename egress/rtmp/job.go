package rtmp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
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

	// wentLive is when the current session went live (zero before); only
	// the run goroutine uses it.
	wentLive time.Time

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
		// The error that made it reconnect is history once it is live
		// again: an operator reading the API sees a healthy push.
		j.info.LastError = ""
		j.info.ConnectedAt = time.Now().UTC()
	}
}

// workedFor is how long a session must stay live for its connection to
// count as working: after it drops, attempts come every MinBackoff for
// workedFor before the delay doubles again. A server that accepts the
// publish and drops it at once (a wrong stream key at some CDNs) keeps
// backing off.
const workedFor = 5 * time.Second

func (j *job) run(ctx context.Context) {
	defer close(j.done)
	backoff := j.m.p.MinBackoff
	var steadyUntil time.Time // retries stay at MinBackoff until then
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			j.mu.Lock()
			j.info.Reconnects++
			j.mu.Unlock()
		}
		j.wentLive = time.Time{}
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
		if !j.wentLive.IsZero() && time.Since(j.wentLive) >= workedFor {
			// The connection worked: this is a blip (a CDN restart, a
			// network hiccup), not a server that refuses us. Retry at
			// the shortest delay for a while before backing off.
			backoff = j.m.p.MinBackoff
			steadyUntil = time.Now().Add(workedFor)
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
		if time.Now().After(steadyUntil) {
			backoff = min(backoff*2, j.m.p.MaxBackoff)
		}
	}
}

// session connects once and pushes until an error.
func (j *job) session(ctx context.Context) error {
	select {
	case <-j.st.Done():
		return errStreamDone
	default:
	}
	video, audio := frames.H264AndOpus(j.st)
	if video == nil {
		return ErrNoH264
	}
	j.mu.Lock()
	videoOnly := j.info.VideoOnly
	j.mu.Unlock()
	if videoOnly {
		audio = nil
	}
	// Connect first: while the server is down an attempt is one refused
	// dial, and after a blip the publish is accepted as soon as it is back.
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
	// The frame and AAC readers are taken only now that the server has
	// accepted the publish: a job whose server is down costs no
	// transcoder, and no keyframes asked of the publisher, per attempt.
	sps, pps := codec.H264SpropParameterSets(video.Info().Codec.Fmtp)
	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var first *frames.Frame
	for first == nil {
		select {
		case <-poll.C:
			if err := readServer(); err != nil {
				return err
			}
		case <-wait.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("no H.264 keyframe with SPS/PPS within 20 s")
		case <-vr.Done():
			return errStreamDone
		case f := <-vr.Frames():
			s, p := codec.H264ParamSets(f.Units)
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

	vtrack := &gortmplib.Track{Codec: &rtmpcodecs.H264{SPS: sps, PPS: pps}}
	tracks := []*gortmplib.Track{vtrack}
	var atrack *gortmplib.Track
	if asc != nil {
		atrack = &gortmplib.Track{Codec: &rtmpcodecs.MPEG4Audio{Config: asc}}
		tracks = append(tracks, atrack)
	}
	if err := writeMeta(conn, sps, asc, j.m.p.AudioBitrate, j.st); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if err := writeVideoConfig(conn, sps, pps, 0); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if asc != nil {
		if err := conn.Write(&message.Audio{ChunkStreamID: message.AudioChunkStreamID, MessageStreamID: 0x1000000,
			Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100, Depth: message.AudioDepth16,
			IsStereo: true, AACType: message.AudioAACTypeConfig, AACConfig: asc}); err != nil {
			return fmt.Errorf("write header: %w", err)
		}
	}
	// Writer without Initialize: it then writes legacy FLV tags (track 0),
	// and the header above is ours (with onMetaData filled in).
	w := &gortmplib.Writer{Conn: conn, Tracks: tracks}
	j.setState(StateLive, nil)
	j.wentLive = time.Now()
	j.m.log.Info("rtmp push live", "job", j.id, "stream", j.st.Path())

	base := vr.Zero().Add(ptsDur(first.PTS, vr.ClockRate()))
	var lastV, lastA time.Duration = -1, -1
	writeVideo := func(f *frames.Frame) error {
		d := vr.Zero().Add(ptsDur(f.PTS, vr.ClockRate())).Sub(base)
		if d < 0 || d <= lastV {
			return nil
		}
		lastV = d
		// A browser publisher changes resolution mid-stream (its ramp at
		// start, bandwidth or CPU adaptation): the new SPS/PPS go to the
		// server in band as a new AVC sequence header, as encoders that
		// change resolution do, so the CDN connection lives on.
		if s, p := codec.H264ParamSets(f.Units); (s != nil && !bytes.Equal(s, sps)) || (p != nil && !bytes.Equal(p, pps)) {
			ns, np := sps, pps
			if s != nil {
				ns = s
			}
			if p != nil {
				np = p
			}
			if err := writeVideoConfig(conn, ns, np, d); err != nil {
				return fmt.Errorf("new video parameters: %w", err)
			}
			if !bytes.Equal(ns, sps) {
				// Players that read onMetaData (and CDN dashboards)
				// see the new size too.
				if err := writeMeta(conn, ns, asc, j.m.p.AudioBitrate, j.st); err != nil {
					return fmt.Errorf("new video parameters: %w", err)
				}
			}
			sps, pps = ns, np
			j.mu.Lock()
			j.info.VideoChanges++
			j.mu.Unlock()
			var size h264.SPS
			_ = size.Unmarshal(sps)
			j.m.log.Info("rtmp push: video parameters changed; new sequence header sent in band",
				"job", j.id, "stream", j.st.Path(), "width", size.Width(), "height", size.Height())
		}
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

// writeMeta sends onMetaData (size, frame rate, bitrates).
func writeMeta(conn gortmplib.Conn, sps []byte, asc *mpeg4audio.AudioSpecificConfig, audioBitrate int, st *relay.Stream) error {
	meta := amf0.Object{
		{Key: "videocodecid", Value: float64(message.CodecH264)},
		{Key: "videodatarate", Value: videoKbps(st)},
	}
	// An SPS our parser does not understand still decodes at the player:
	// the size is then left out rather than the push failing.
	var s h264.SPS
	if err := s.Unmarshal(sps); err == nil {
		meta = append(meta,
			amf0.ObjectEntry{Key: "width", Value: float64(s.Width())},
			amf0.ObjectEntry{Key: "height", Value: float64(s.Height())},
			amf0.ObjectEntry{Key: "framerate", Value: cmp.Or(s.FPS(), 30)})
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
	return conn.Write(&message.DataAMF0{ChunkStreamID: 4, MessageStreamID: 0x1000000,
		Payload: []any{"@setDataFrame", "onMetaData", meta}})
}

// writeVideoConfig sends an AVC sequence header (the decoder configuration)
// at dts: at the start, and again whenever the publisher's SPS/PPS change.
func writeVideoConfig(conn gortmplib.Conn, sps, pps []byte, dts time.Duration) error {
	cfg, err := avcC(sps, pps)
	if err != nil {
		return err
	}
	return conn.Write(&message.Video{ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000,
		Codec: message.CodecH264, IsKeyFrame: true, Type: message.VideoTypeConfig, AVCConfig: cfg, DTS: dts})
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

// avcC is the AVCDecoderConfigurationRecord of one SPS and one PPS.
func avcC(sps, pps []byte) (*mp4.AVCDecoderConfiguration, error) {
	if len(sps) < 4 || len(pps) < 1 || len(sps) > math.MaxUint16 || len(pps) > math.MaxUint16 {
		return nil, fmt.Errorf("bad H.264 parameter sets (SPS %d bytes, PPS %d bytes)", len(sps), len(pps))
	}
	return &mp4.AVCDecoderConfiguration{
		AnyTypeBox:                 mp4.AnyTypeBox{Type: mp4.BoxTypeAvcC()},
		ConfigurationVersion:       1,
		Profile:                    sps[1],
		ProfileCompatibility:       sps[2],
		Level:                      sps[3],
		Reserved:                   0b111111,
		LengthSizeMinusOne:         3,
		Reserved2:                  0b111,
		NumOfSequenceParameterSets: 1,
		SequenceParameterSets:      []mp4.AVCParameterSet{{Length: uint16(len(sps)), NALUnit: sps}},
		NumOfPictureParameterSets:  1,
		PictureParameterSets:       []mp4.AVCParameterSet{{Length: uint16(len(pps)), NALUnit: pps}},
	}, nil
}
