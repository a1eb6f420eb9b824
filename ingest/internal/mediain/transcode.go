package mediain

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay/codec"
)

// AACToOpus transcodes one stream's AAC to Opus with one ffmpeg process:
// ADTS in, Ogg/Opus out, split into Opus packets. Writes never block the
// publisher: when ffmpeg falls behind, AAC frames are dropped.
type AACToOpus struct {
	asc     *mpeg4audio.AudioSpecificConfig
	in      chan []byte
	cancel  context.CancelFunc
	done    chan struct{}
	log     *slog.Logger
	closing atomic.Bool
}

// StartAACToOpus starts ffmpeg. out gets each Opus packet with its length
// in 48 kHz samples, in order, on the transcoder's goroutine.
func StartAACToOpus(ffmpeg string, asc *mpeg4audio.AudioSpecificConfig, bitrate int, log *slog.Logger,
	out func(pkt []byte, samples int64)) (*AACToOpus, error) {
	if ffmpeg == "" {
		return nil, errors.New("no ffmpeg")
	}
	if asc == nil {
		return nil, errors.New("no AAC configuration")
	}
	if bitrate <= 0 {
		bitrate = 96000
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd, stderr := ffproc.Command(ctx, ffmpeg,
		"-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0", "-f", "aac", "-i", "pipe:0",
		"-vn", "-c:a", "libopus", "-b:a", fmt.Sprint(bitrate), "-ar", "48000", "-ac", "2",
		"-application", "lowdelay", "-frame_duration", "20",
		"-page_duration", "20000", "-flush_packets", "1", "-f", "ogg", "pipe:1")
	stdin, stdout, err := ffproc.StartPiped(cmd)
	if err != nil {
		cancel()
		return nil, err
	}
	t := &AACToOpus{asc: asc, in: make(chan []byte, 256), cancel: cancel, done: make(chan struct{}), log: log}
	readDone := make(chan error, 1)
	go func() {
		err := ReadOggOpus(stdout, out)
		cancel() // ffmpeg's output ended: stop it and the feeder
		readDone <- err
	}()
	go func() {
		defer close(t.done)
		werr := t.feed(ctx, stdin)
		_ = stdin.Close()
		rerr := <-readDone
		_ = cmd.Wait()
		if !t.closing.Load() {
			log.Warn("AAC->Opus transcoder ended; the stream continues without audio",
				"write_err", werr, "read_err", rerr, "ffmpeg", stderr.String())
		}
	}()
	return t, nil
}

func (t *AACToOpus) feed(ctx context.Context, w io.Writer) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case au, ok := <-t.in:
			if !ok {
				return nil
			}
			pkts := mpeg4audio.ADTSPackets{{Type: t.asc.Type, SampleRate: t.asc.SampleRate,
				ChannelCount: t.asc.ChannelCount, AU: au}}
			b, err := pkts.Marshal()
			if err != nil {
				continue
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
}

// Write queues one AAC access unit. It reports false when the transcoder
// is behind or gone and the unit was dropped.
func (t *AACToOpus) Write(au []byte) bool {
	select {
	case <-t.done:
		return false
	default:
	}
	select {
	case t.in <- append([]byte(nil), au...):
		return true
	default:
		return false
	}
}

// Close stops ffmpeg and waits for it.
func (t *AACToOpus) Close() {
	t.closing.Store(true)
	t.cancel()
	<-t.done
}

// ReadOggOpus reads an Ogg/Opus stream and calls out for every Opus audio
// packet (the OpusHead and OpusTags header packets are skipped). It returns
// the read error that ended the stream (nil at a clean EOF).
func ReadOggOpus(r io.Reader, out func(pkt []byte, samples int64)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [27]byte
	var pending []byte
	packets := 0
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if string(hdr[:4]) != "OggS" {
			return errors.New("ogg: lost page sync")
		}
		_ = binary.LittleEndian.Uint64(hdr[6:14]) // granule position
		lacing := make([]byte, hdr[26])
		if _, err := io.ReadFull(br, lacing); err != nil {
			return err
		}
		total := 0
		for _, l := range lacing {
			total += int(l)
		}
		body := make([]byte, total)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		if hdr[5]&0x01 == 0 { // not a continuation: drop a dangling partial packet
			pending = pending[:0]
		}
		off := 0
		for _, l := range lacing {
			pending = append(pending, body[off:off+int(l)]...)
			off += int(l)
			if l < 255 {
				if packets >= 2 && len(pending) > 0 {
					pkt := append([]byte(nil), pending...)
					out(pkt, codec.OpusSamples(pkt))
				}
				packets++
				pending = pending[:0]
			}
		}
	}
}
