// Package aac turns a stream's Opus track into AAC once per stream, with one
// ffmpeg process, for every output that needs AAC (RTMP push, the HLS
// rendition Safari plays). Readers get the access units through bounded
// queues, like the frame layer: a reader that falls behind loses frames and
// never slows the others.
package aac

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// ErrNoFFmpeg means ffmpeg is missing: Opus cannot become AAC.
var ErrNoFFmpeg = errors.New("aac: ffmpeg not found: Opus audio cannot be transcoded to AAC; install ffmpeg")

// SampleRate is the transcoder's output sample rate.
const SampleRate = 48000

// SamplesPerFrame is the length of one AAC-LC access unit.
const SamplesPerFrame = 1024

// readerQueue bounds the access units waiting for one reader (about 5 s).
const readerQueue = 256

// Frame is one AAC access unit and its capture time (zero if unknown).
type Frame struct {
	At time.Time
	AU []byte
}

// Params configures Transcoders. Zero values take the defaults.
type Params struct {
	Frames *frames.Layer
	// FFmpeg is the ffmpeg binary ("" looks up "ffmpeg" in PATH; "-"
	// disables transcoding).
	FFmpeg string
	// Bitrate of the AAC output in bit/s (default 128000).
	Bitrate int
	Logger  *slog.Logger
}

// Transcoders is the per-stream transcoder registry. One registry shared
// by every output keeps it at one ffmpeg per stream.
type Transcoders struct {
	p      Params
	ffmpeg string

	mu  sync.Mutex
	all map[*relay.Track]*transcoder

	started atomic.Int64
}

// New returns a registry; without ffmpeg every Acquire fails with
// ErrNoFFmpeg.
func New(p Params) *Transcoders {
	if p.Bitrate <= 0 {
		p.Bitrate = 128000
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	t := &Transcoders{p: p, all: map[*relay.Track]*transcoder{}}
	t.ffmpeg = ffproc.Find(p.FFmpeg)
	return t
}

// Available reports whether ffmpeg was found.
func (t *Transcoders) Available() bool { return t.ffmpeg != "" }

// Bitrate is the AAC bitrate in bit/s.
func (t *Transcoders) Bitrate() int { return t.p.Bitrate }

// Started is the number of transcoders started so far (for tests and
// metrics).
func (t *Transcoders) Started() int64 { return t.started.Load() }

// transcoder runs one ffmpeg for one Opus track.
type transcoder struct {
	key *relay.Track
	log *slog.Logger

	mu      sync.Mutex
	readers map[*Reader]struct{}
	config  *mpeg4audio.AudioSpecificConfig
	cfgCh   chan struct{} // closed once config is known

	cancel context.CancelFunc
	done   chan struct{}
	err    atomic.Pointer[error]
}

// Reader receives the AAC version of one track.
type Reader struct {
	reg  *Transcoders
	t    *transcoder
	ch   chan Frame
	once sync.Once
}

// Acquire returns a reader of the AAC version of track tr of stream st,
// starting its transcoder if it is the first. Close the reader when done;
// the last Close stops the transcoder.
func (t *Transcoders) Acquire(st *relay.Stream, tr *relay.Track) (*Reader, error) {
	if t.ffmpeg == "" {
		return nil, ErrNoFFmpeg
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tc := t.all[tr]
	if tc == nil {
		fr, err := t.p.Frames.Subscribe(st, tr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		tc = &transcoder{key: tr, log: t.p.Logger, readers: map[*Reader]struct{}{},
			cfgCh: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
		t.all[tr] = tc
		t.started.Add(1)
		go tc.run(ctx, fr, t.ffmpeg, t.p.Bitrate, int(tr.Info().Codec.Channels))
	}
	r := &Reader{reg: t, t: tc, ch: make(chan Frame, readerQueue)}
	tc.mu.Lock()
	tc.readers[r] = struct{}{}
	tc.mu.Unlock()
	return r, nil
}

// Close detaches the reader; the last one stops the transcoder and waits
// for ffmpeg to exit.
func (r *Reader) Close() {
	r.once.Do(func() {
		reg, tc := r.reg, r.t
		reg.mu.Lock()
		defer reg.mu.Unlock()
		tc.mu.Lock()
		delete(tc.readers, r)
		last := len(tc.readers) == 0
		tc.mu.Unlock()
		if last {
			if reg.all[tc.key] == tc {
				delete(reg.all, tc.key)
			}
			tc.cancel()
			<-tc.done
		}
	})
}

// Frames delivers the access units, in order.
func (r *Reader) Frames() <-chan Frame { return r.ch }

// Done is closed when the transcoder has ended (stream gone or ffmpeg
// failed; Err says which).
func (r *Reader) Done() <-chan struct{} { return r.t.done }

// Err is why the transcoder ended, nil while it runs or if it ended with
// its stream.
func (r *Reader) Err() error {
	if e := r.t.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Config waits for the AAC configuration (known with the first output).
func (r *Reader) Config(ctx context.Context) (*mpeg4audio.AudioSpecificConfig, error) {
	select {
	case <-r.t.cfgCh:
		r.t.mu.Lock()
		defer r.t.mu.Unlock()
		return r.t.config, nil
	case <-r.t.done:
		if e := r.t.err.Load(); e != nil {
			return nil, *e
		}
		return nil, errors.New("aac: transcoder ended")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// opusSilence is a 20 ms Opus frame of silence (CELT, fullband), written
// for gaps in the input so that the AAC timeline keeps its place.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

func (t *transcoder) run(ctx context.Context, fr *frames.Reader, ffmpeg string, bitrate, channels int) {
	defer close(t.done)
	defer fr.Close()
	err := t.transcode(ctx, fr, ffmpeg, bitrate, channels)
	if err != nil && ctx.Err() == nil {
		t.log.Warn("aac: audio transcoder failed", "err", err)
		t.err.Store(&err)
	}
}

func (t *transcoder) transcode(ctx context.Context, fr *frames.Reader, ffmpeg string, bitrate, channels int) error {
	if channels <= 0 {
		channels = 2
	}
	cmd, stderr := ffproc.Command(ctx, ffmpeg,
		"-probesize", "4096", "-analyzeduration", "0", "-f", "ogg", "-i", "pipe:0",
		"-vn", "-c:a", "aac", "-b:a", fmt.Sprint(bitrate), "-ar", fmt.Sprint(SampleRate), "-ac", "2",
		"-flush_packets", "1", "-f", "adts", "pipe:1")
	stdin, stdout, err := ffproc.StartPiped(cmd)
	if err != nil {
		return err
	}
	// The first frame's time anchors the AAC timeline: AAC frame n is
	// 1024 samples after frame n-1.
	var start atomic.Pointer[time.Time]
	readDone := make(chan error, 1)
	go func() { readDone <- t.readADTS(stdout, &start) }()

	ogg, err := oggwriter.NewWith(stdin, 48000, uint16(channels))
	if err != nil {
		_ = stdin.Close()
		_ = cmd.Wait()
		return err
	}
	clock := int64(fr.ClockRate())
	var next int64 // expected PTS of the next Opus packet (48 kHz)
	have := false
	writeErr := func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-fr.Done():
				return nil
			case err := <-readDone:
				return fmt.Errorf("ffmpeg output: %w (%s)", err, stderr.String())
			case f := <-fr.Frames():
				pts := f.PTS * 48000 / clock
				if !have {
					at := fr.Zero().Add(time.Duration(f.PTS * int64(time.Second) / clock))
					start.Store(&at)
					have, next = true, pts
				}
				// Fill gaps (lost packets, a publisher that paused) with
				// silence, up to 10 s; larger jumps are taken as they come.
				for gap := pts - next; gap >= 960 && gap < 10*48000; gap -= 960 {
					if err := ogg.WriteRTP(&rtp.Packet{Payload: opusSilence}); err != nil {
						return err
					}
					next += 960
				}
				if err := ogg.WriteRTP(&rtp.Packet{Payload: f.Units[0]}); err != nil {
					return fmt.Errorf("ffmpeg input: %w (%s)", err, stderr.String())
				}
				next = pts + codec.OpusSamples(f.Units[0])
			}
		}
	}()
	_ = stdin.Close()
	if ctx.Err() != nil {
		_ = cmd.Wait()
		return nil
	}
	werr := cmd.Wait()
	if writeErr != nil {
		return writeErr
	}
	return werr
}

// readADTS splits ffmpeg's ADTS output into access units and fans them out.
func (t *transcoder) readADTS(r io.Reader, start *atomic.Pointer[time.Time]) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	hdr := make([]byte, 7)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			return err
		}
		if hdr[0] != 0xff || hdr[1]&0xf0 != 0xf0 {
			return errors.New("bad ADTS sync")
		}
		size := int(hdr[3]&0x03)<<11 | int(hdr[4])<<3 | int(hdr[5])>>5
		if size < 7 {
			return errors.New("bad ADTS frame length")
		}
		frame := make([]byte, size)
		copy(frame, hdr)
		if _, err := io.ReadFull(br, frame[7:]); err != nil {
			return err
		}
		var pkts mpeg4audio.ADTSPackets
		if err := pkts.Unmarshal(frame); err != nil || len(pkts) != 1 {
			return fmt.Errorf("bad ADTS frame: %v", err)
		}
		p := pkts[0]
		t.mu.Lock()
		if t.config == nil {
			t.config = &mpeg4audio.AudioSpecificConfig{Type: p.Type, SampleRate: p.SampleRate, ChannelCount: p.ChannelCount}
			close(t.cfgCh)
		}
		at := time.Time{}
		if s := start.Load(); s != nil {
			at = s.Add(time.Duration(n * SamplesPerFrame * int64(time.Second) / int64(p.SampleRate)))
		}
		n++
		for r := range t.readers {
			select {
			case r.ch <- Frame{At: at, AU: p.AU}:
			default: // a reader that is behind loses audio frames
			}
		}
		t.mu.Unlock()
	}
}
