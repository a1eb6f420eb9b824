package rtmp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// ErrNoTranscoder means ffmpeg is missing: Opus cannot become AAC.
var ErrNoTranscoder = errors.New("rtmp: ffmpeg not found: Opus audio cannot be transcoded to AAC; install ffmpeg or push with videoOnly")

// aacFrame is one AAC access unit and its capture time.
type aacFrame struct {
	at time.Time
	au []byte
}

// aacRate is the transcoder's output sample rate.
const aacRate = 48000

// transcoder turns one stream's Opus track into AAC once, with one ffmpeg
// process, for every push job of that stream (fan-out through bounded
// queues, like the frame layer).
type transcoder struct {
	key     *relay.Track
	ffmpeg  string
	bitrate int
	log     *slog.Logger

	mu      sync.Mutex
	readers map[*aacReader]struct{}
	config  *mpeg4audio.AudioSpecificConfig
	cfgCh   chan struct{} // closed once config is known
	refs    int

	cancel context.CancelFunc
	done   chan struct{}
	err    atomic.Pointer[error]
}

type aacReader struct {
	t  *transcoder
	ch chan aacFrame
}

// transcoders is the per-stream transcoder registry of a Manager.
type transcoders struct {
	mu  sync.Mutex
	all map[*relay.Track]*transcoder
}

// acquire returns a reader of the AAC version of track t of stream st,
// starting its transcoder if it is the first.
func (m *Manager) acquireAAC(st *relay.Stream, t *relay.Track) (*aacReader, error) {
	if m.ffmpeg == "" {
		return nil, ErrNoTranscoder
	}
	m.tc.mu.Lock()
	defer m.tc.mu.Unlock()
	tc := m.tc.all[t]
	if tc == nil {
		fr, err := m.p.Frames.Subscribe(st, t)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		tc = &transcoder{key: t, ffmpeg: m.ffmpeg, bitrate: m.p.AudioBitrate, log: m.log,
			readers: map[*aacReader]struct{}{}, cfgCh: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
		m.tc.all[t] = tc
		m.transcodes.Add(1)
		go tc.run(ctx, fr, int(t.Info().Codec.Channels))
	}
	r := &aacReader{t: tc, ch: make(chan aacFrame, 256)}
	tc.mu.Lock()
	tc.readers[r] = struct{}{}
	tc.refs++
	tc.mu.Unlock()
	return r, nil
}

func (m *Manager) releaseAAC(r *aacReader) {
	m.tc.mu.Lock()
	defer m.tc.mu.Unlock()
	tc := r.t
	tc.mu.Lock()
	delete(tc.readers, r)
	tc.refs--
	last := tc.refs == 0
	tc.mu.Unlock()
	if last {
		if m.tc.all[tc.key] == tc {
			delete(m.tc.all, tc.key)
		}
		tc.cancel()
		<-tc.done
	}
}

// Config waits for the AAC configuration (known with the first output).
func (r *aacReader) Config(ctx context.Context) (*mpeg4audio.AudioSpecificConfig, error) {
	select {
	case <-r.t.cfgCh:
		r.t.mu.Lock()
		defer r.t.mu.Unlock()
		return r.t.config, nil
	case <-r.t.done:
		if e := r.t.err.Load(); e != nil {
			return nil, *e
		}
		return nil, errors.New("rtmp: transcoder ended")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// opusSilence is a 20 ms Opus frame of silence (CELT, fullband), written
// for gaps in the input so that the AAC timeline keeps its place.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

func (t *transcoder) run(ctx context.Context, fr *frames.Reader, channels int) {
	defer close(t.done)
	defer fr.Close()
	err := t.transcode(ctx, fr, channels)
	if err != nil && ctx.Err() == nil {
		t.log.Warn("rtmp: audio transcoder failed", "err", err)
		t.err.Store(&err)
	}
}

func (t *transcoder) transcode(ctx context.Context, fr *frames.Reader, channels int) error {
	if channels <= 0 {
		channels = 2
	}
	cmd := exec.CommandContext(ctx, t.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
		"-probesize", "4096", "-analyzeduration", "0", "-f", "ogg", "-i", "pipe:0",
		"-vn", "-c:a", "aac", "-b:a", fmt.Sprint(t.bitrate), "-ar", fmt.Sprint(aacRate), "-ac", "2",
		"-flush_packets", "1", "-f", "adts", "pipe:1")
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &limitedBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting ffmpeg: %w", err)
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
			at = s.Add(time.Duration(n * 1024 * int64(time.Second) / int64(p.SampleRate)))
		}
		n++
		for r := range t.readers {
			select {
			case r.ch <- aacFrame{at: at, au: p.AU}:
			default: // a job that is behind loses audio frames
			}
		}
		t.mu.Unlock()
	}
}

// limitedBuffer keeps the first max bytes of ffmpeg's stderr.
type limitedBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(bytes.TrimSpace(l.b.Bytes()))
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}
