package composite

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// deps is what inputs need of the manager.
type deps struct {
	frames *frames.Layer
	ffmpeg string
	log    *slog.Logger
}

// videoIn decodes one host's video track to I420 pictures of its tile's
// size with an ffmpeg process (decoding, scaling with the aspect ratio
// kept, padding). When the tile size changes a second decoder starts at
// the new size from the relay's GOP cache; the old one keeps the tile
// filled until the new one has a picture, so the layout changes without a
// gap and the encoder never restarts.
type videoIn struct {
	d     deps
	st    *relay.Stream
	tr    *relay.Track
	ivf   bool // VP9 in IVF; else H.264 Annex-B
	label string

	mu      sync.Mutex
	w, h    int    // wanted size
	pic     []byte // latest picture
	pw, ph  int
	picGen  int
	resize  chan struct{}
	decoded uint64

	cancel context.CancelFunc
	done   chan struct{}
}

func videoSupported(mime string) bool {
	return strings.EqualFold(mime, codec.MimeH264) || strings.EqualFold(mime, codec.MimeVP9)
}

func startVideoIn(d deps, st *relay.Stream, tr *relay.Track, w, h int) *videoIn {
	ctx, cancel := context.WithCancel(context.Background())
	v := &videoIn{d: d, st: st, tr: tr, ivf: strings.EqualFold(tr.Info().Codec.MimeType, codec.MimeVP9),
		label: st.Path(), w: w, h: h, resize: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go v.run(ctx)
	return v
}

func (v *videoIn) close() {
	v.cancel()
	<-v.done
}

// setSize asks for pictures of w x h (the decoder restarts in the
// background).
func (v *videoIn) setSize(w, h int) {
	v.mu.Lock()
	changed := v.w != w || v.h != h
	v.w, v.h = w, h
	v.mu.Unlock()
	if changed {
		select {
		case v.resize <- struct{}{}:
		default:
		}
	}
}

// drawNew puts the latest picture into r of c unless it is picture
// number last (already drawn); it returns the number of the picture now
// in r (0: none yet).
func (v *videoIn) drawNew(c *canvas, r Rect, last uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pic == nil || v.decoded == last {
		return v.decoded
	}
	c.blit(r, v.pic, v.pw, v.ph)
	return v.decoded
}

// put takes a decoded picture of generation gen; it returns a buffer to
// decode the next picture into.
func (v *videoIn) put(gen int, pic []byte, w, h int) []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen < v.picGen {
		return pic // from a decoder being replaced
	}
	old := v.pic
	v.pic, v.pw, v.ph, v.picGen = pic, w, h, gen
	v.decoded++
	if len(old) == len(pic) {
		return old
	}
	return make([]byte, len(pic))
}

type decEvent struct {
	dec   *decoder
	first bool // first picture (else: ended)
	err   error
}

type decoder struct {
	gen     int
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}
}

func (v *videoIn) run(ctx context.Context) {
	defer close(v.done)
	events := make(chan decEvent, 8)
	var decs []*decoder // oldest first; at most two
	gen := 0
	bo := ffproc.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	var retry <-chan time.Time
	start := func() {
		v.mu.Lock()
		w, h := v.w, v.h
		v.mu.Unlock()
		if len(decs) == 2 {
			// A resize while the previous resize is still starting:
			// that one is replaced.
			decs[1].cancel()
			<-decs[1].done
			decs = decs[:1]
		}
		gen++
		decs = append(decs, v.startDecoder(ctx, gen, w, h, events))
	}
	start()
	for {
		select {
		case <-ctx.Done():
			for _, d := range decs {
				d.cancel()
				<-d.done
			}
			// Drain events so decoders never block on a full channel.
			return
		case <-v.resize:
			start()
		case <-retry:
			retry = nil
			if len(decs) == 0 {
				start()
			}
		case e := <-events:
			if e.first {
				if !slices.Contains(decs, e.dec) {
					continue
				}
				// The new size is on screen: older decoders go.
				for decs[0] != e.dec {
					decs[0].cancel()
					<-decs[0].done
					decs = decs[1:]
				}
				continue
			}
			for i, d := range decs {
				if d == e.dec {
					decs = append(decs[:i], decs[i+1:]...)
					break
				}
			}
			select {
			case <-v.st.Done():
				<-ctx.Done() // the session removes this input
				continue
			default:
			}
			if len(decs) == 0 && ctx.Err() == nil {
				wait := bo.Next(time.Since(e.dec.started))
				v.d.log.Warn("composite: video decoder ended; restarting", "stream", v.label, "err", e.err, "in", wait)
				retry = time.After(wait)
			}
		}
	}
}

func (v *videoIn) startDecoder(ctx context.Context, gen, w, h int, events chan<- decEvent) *decoder {
	dctx, cancel := context.WithCancel(ctx)
	d := &decoder{gen: gen, started: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		err := v.decode(dctx, d, w, h, events)
		if dctx.Err() == nil {
			select {
			case events <- decEvent{dec: d, err: err}:
			case <-dctx.Done():
			}
		}
	}()
	return d
}

// aud ends an H.264 access unit for ffmpeg's parser, so a frame is decoded
// as soon as it is written rather than when the next one starts.
var aud = []byte{0, 0, 0, 1, 9, 0xf0}

func (v *videoIn) decode(ctx context.Context, d *decoder, w, h int, events chan<- decEvent) error {
	fr, err := v.d.frames.Subscribe(v.st, v.tr)
	if err != nil {
		return err
	}
	defer fr.Close()
	in := []string{"-f", "h264"}
	if v.ivf {
		in = []string{"-f", "ivf"}
	}
	vf := fmt.Sprintf("scale=%d:%d:force_original_aspect_ratio=decrease:flags=bilinear,"+
		"pad=%d:%d:(ow-iw)/2:(oh-ih)/2:color=black,format=yuv420p", w, h, w, h)
	args := append([]string{
		"-probesize", "32", "-analyzeduration", "1", "-fpsprobesize", "0", "-threads", "1"}, in...)
	args = append(args, "-i", "pipe:0", "-an", "-vf", vf, "-fps_mode", "passthrough",
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-flush_packets", "1", "pipe:1")
	cmd, stderr := ffproc.Command(ctx, v.d.ffmpeg, args...)
	stdin, stdout, err := ffproc.StartPiped(cmd)
	if err != nil {
		return err
	}
	feedDone := make(chan error, 1)
	go func() {
		feedDone <- v.feed(ctx, fr, stdin)
		_ = stdin.Close()
	}()
	size := frameSize(w, h)
	buf := make([]byte, size)
	first := true
	var rerr error
	for {
		if _, rerr = io.ReadFull(stdout, buf); rerr != nil {
			break
		}
		buf = v.put(d.gen, buf, w, h)
		if first {
			first = false
			v.d.log.Debug("composite: decoder has its first picture", "stream", v.label, "size", fmt.Sprintf("%dx%d", w, h),
				"after", time.Since(d.started))
			select {
			case events <- decEvent{dec: d, first: true}:
			case <-ctx.Done():
			}
		}
	}
	werr := cmd.Wait()
	<-feedDone
	if ctx.Err() != nil {
		return nil
	}
	return ffproc.Ended(werr, rerr, stderr)
}

func (v *videoIn) feed(ctx context.Context, fr *frames.Reader, w io.WriteCloser) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if v.ivf {
		hdr := make([]byte, 32)
		copy(hdr, "DKIF")
		binary.LittleEndian.PutUint16(hdr[6:], 32)
		copy(hdr[8:], "VP90")
		binary.LittleEndian.PutUint16(hdr[12:], 1280)
		binary.LittleEndian.PutUint16(hdr[14:], 720)
		binary.LittleEndian.PutUint32(hdr[16:], uint32(fr.ClockRate()))
		binary.LittleEndian.PutUint32(hdr[20:], 1)
		if _, err := bw.Write(hdr); err != nil {
			return err
		}
	}
	fh := make([]byte, 12)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-fr.Done():
			return nil
		case f := <-fr.Frames():
			if v.ivf {
				binary.LittleEndian.PutUint32(fh, uint32(len(f.Units[0])))
				binary.LittleEndian.PutUint64(fh[4:], uint64(f.PTS))
				_, _ = bw.Write(fh)
				_, _ = bw.Write(f.Units[0])
			} else {
				for _, u := range f.Units {
					_, _ = bw.Write(aud[:4])
					_, _ = bw.Write(u)
				}
				_, _ = bw.Write(aud)
			}
			if err := bw.Flush(); err != nil {
				return err
			}

		}
	}
}

// audioIn decodes one host's Opus track to 48 kHz stereo PCM with an
// ffmpeg process, into a short buffer the mixer takes 20 ms from at a
// time. The buffer is bounded: a host whose audio comes in bursts loses
// the oldest samples rather than adding delay.
type audioIn struct {
	d     deps
	st    *relay.Stream
	tr    *relay.Track
	label string

	mu     sync.Mutex
	buf    []int16 // interleaved stereo
	primed bool
	peak   int16 // of the last chunk mixed

	cancel context.CancelFunc
	done   chan struct{}
}

const (
	chunkSamples = 960              // 20 ms at 48 kHz
	chunkValues  = chunkSamples * 2 // stereo
	// prebuffer is the cushion before a host is mixed in. It also holds
	// the audio back to meet the pictures: the video path (decoder, a
	// frame's wait for composition, the encoder, the MPEG-TS demux) is
	// about 180 ms longer than the audio one without it; audio ahead of
	// the picture is noticed sooner than behind it, so this errs late
	// (TestAVSync measures the skew in the encoder's timestamps: -27 to
	// +20 ms with 180 ms, +27 to +60 ms with 220 ms).
	prebuffer   = 10 * chunkValues // 200 ms
	maxBuffered = 16 * chunkValues // 320 ms
)

func startAudioIn(d deps, st *relay.Stream, tr *relay.Track) *audioIn {
	ctx, cancel := context.WithCancel(context.Background())
	a := &audioIn{d: d, st: st, tr: tr, label: st.Path(), cancel: cancel, done: make(chan struct{})}
	go a.run(ctx)
	return a
}

func (a *audioIn) close() {
	a.cancel()
	<-a.done
}

// mixInto adds the host's next 20 ms to out (saturating); false if it had
// nothing to give.
func (a *audioIn) mixInto(out []int32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.primed {
		if len(a.buf) < prebuffer {
			return false
		}
		// Start from exactly the cushion, whatever burst filled it, so
		// the audio delay is the same every time.
		a.buf = append(a.buf[:0], a.buf[len(a.buf)-prebuffer:]...)
		a.primed = true
	}
	n := min(len(a.buf), chunkValues)
	if n < chunkValues {
		a.primed = false // underrun: build the cushion again
	}
	var peak int16
	for i := 0; i < n; i++ {
		s := a.buf[i]
		out[i] += int32(s)
		if s > peak {
			peak = s
		}
	}
	a.peak = peak
	a.buf = append(a.buf[:0], a.buf[n:]...)
	return n > 0
}

func (a *audioIn) push(pcm []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i+1 < len(pcm); i += 2 {
		a.buf = append(a.buf, int16(binary.LittleEndian.Uint16(pcm[i:])))
	}
	if over := len(a.buf) - maxBuffered; over > 0 {
		over += over & 1
		a.buf = append(a.buf[:0], a.buf[over:]...)
	}
}

func (a *audioIn) run(ctx context.Context) {
	defer close(a.done)
	bo := ffproc.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for {
		started := time.Now()
		err := a.decode(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-a.st.Done():
			<-ctx.Done()
			return
		default:
		}
		wait := bo.Next(time.Since(started))
		a.d.log.Warn("composite: audio decoder ended; restarting", "stream", a.label, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (a *audioIn) decode(ctx context.Context) error {
	fr, err := a.d.frames.Subscribe(a.st, a.tr)
	if err != nil {
		return err
	}
	defer fr.Close()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := ffproc.Command(dctx, a.d.ffmpeg,
		"-probesize", "4096", "-analyzeduration", "0", "-fflags", "nobuffer", "-f", "ogg", "-i", "pipe:0",
		"-vn", "-f", "s16le", "-ar", "48000", "-ac", "2", "-flush_packets", "1", "pipe:1")
	stdin, stdout, err := ffproc.StartPiped(cmd)
	if err != nil {
		return err
	}
	feedDone := make(chan error, 1)
	go func() {
		defer func() { _ = stdin.Close() }()
		ogg, err := oggwriter.NewWith(stdin, 48000, 2)
		if err != nil {
			feedDone <- err
			return
		}
		for {
			select {
			case <-dctx.Done():
				feedDone <- nil
				return
			case <-fr.Done():
				feedDone <- nil
				return
			case f := <-fr.Frames():
				if err := ogg.WriteRTP(&rtp.Packet{Payload: f.Units[0]}); err != nil {
					feedDone <- err
					cancel()
					return
				}
			}
		}
	}()
	buf := make([]byte, 3840) // 20 ms
	have := 0
	var rerr error
	for {
		n, err := stdout.Read(buf[have:])
		have += n
		// Whole stereo samples only; a partial one waits for its rest.
		if whole := have &^ 3; whole > 0 {
			a.push(buf[:whole])
			have = copy(buf, buf[whole:have])
		}
		if err != nil {
			rerr = err
			break
		}
	}
	cancel()
	werr := cmd.Wait()
	<-feedDone
	if ctx.Err() != nil {
		return nil
	}
	return ffproc.Ended(werr, rerr, stderr)
}
