package composite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/livegate/livegate/internal/ffproc"
)

// encoder is the one ffmpeg of a composite: it reads the composed I420
// canvas on stdin and the mixed PCM on fd 3, and writes H.264 (x264,
// constrained baseline, no B-frames, fixed GOP) and Opus in MPEG-TS on
// stdout. It lives as long as the composite: layout changes only change
// the pictures it is given.
type encoder struct {
	video, audio *os.File
	cmd          *exec.Cmd
	stderr       *ffproc.Tail
	started      time.Time
	done         chan struct{} // closed when ffmpeg exited and its output is read
	err          error         // why, valid after done
}

// writeTimeout bounds a write to the encoder: an ffmpeg that stops reading
// for this long is taken as hung and restarted.
const writeTimeout = 3 * time.Second

func startEncoder(ctx context.Context, ffmpeg string, o Options, preset string, gop int,
	onVideo func(pts int64, au [][]byte), onAudio func(pts int64, pkts [][]byte)) (*encoder, error) {
	vr, vw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ar, aw, err := os.Pipe()
	if err != nil {
		_ = vr.Close()
		_ = vw.Close()
		return nil, err
	}
	args := []string{
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", fmt.Sprintf("%dx%d", o.Width, o.Height),
		"-r", fmt.Sprint(o.FPS), "-thread_queue_size", "16", "-i", "pipe:0",
		"-f", "s16le", "-ar", "48000", "-ac", "2", "-thread_queue_size", "256", "-i", "pipe:3",
		"-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-profile:v", "baseline",
		"-b:v", fmt.Sprint(o.VideoBitrate), "-maxrate", fmt.Sprint(o.VideoBitrate),
		"-bufsize", fmt.Sprint(o.VideoBitrate), "-g", fmt.Sprint(gop), "-keyint_min", fmt.Sprint(gop),
		"-sc_threshold", "0", "-bf", "0", "-threads", "2",
		"-c:a", "libopus", "-b:a", fmt.Sprint(o.AudioBitrate), "-frame_duration", "20", "-application", "audio",
		"-f", "mpegts", "-pes_payload_size", "0", "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1", "pipe:1"}
	e := &encoder{video: vw, audio: aw, started: time.Now(), done: make(chan struct{})}
	e.cmd, e.stderr = ffproc.Command(ctx, ffmpeg, args...)
	e.cmd.Stdin = vr
	e.cmd.ExtraFiles = []*os.File{ar}
	stdout, err := e.cmd.StdoutPipe()
	if err == nil {
		err = e.cmd.Start()
	}
	// The child has its own copies of the read ends.
	_ = vr.Close()
	_ = ar.Close()
	if err != nil {
		_ = vw.Close()
		_ = aw.Close()
		return nil, fmt.Errorf("starting ffmpeg: %w", err)
	}
	go func() {
		defer close(e.done)
		rerr := readTS(bufio.NewReaderSize(stdout, 256<<10), onVideo, onAudio)
		// Output gone: make sure ffmpeg is gone too.
		_ = e.cmd.Process.Kill()
		werr := e.cmd.Wait()
		if ctx.Err() != nil {
			return
		}
		e.err = ffproc.Ended(werr, rerr, e.stderr)
	}()
	return e, nil
}

func (e *encoder) write(f *os.File, b []byte) error {
	_ = f.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := f.Write(b)
	return err
}

func (e *encoder) writeVideo(pic []byte) error { return e.write(e.video, pic) }
func (e *encoder) writeAudio(pcm []byte) error { return e.write(e.audio, pcm) }

// stop closes the inputs and waits for ffmpeg (killed with its context
// if it does not exit by itself).
func (e *encoder) stop() {
	_ = e.video.Close()
	_ = e.audio.Close()
	select {
	case <-e.done:
	case <-time.After(3 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

func readTS(r *bufio.Reader, onVideo func(int64, [][]byte), onAudio func(int64, [][]byte)) error {
	tr := &mpegts.Reader{R: r}
	if err := tr.Initialize(); err != nil {
		return fmt.Errorf("MPEG-TS: %w", err)
	}
	found := 0
	for _, t := range tr.Tracks() {
		switch t.Codec.(type) {
		case *mpegts.CodecH264:
			found++
			tr.OnDataH264(t, func(pts, _ int64, au [][]byte) error {
				onVideo(pts, au)
				return nil
			})
		case *mpegts.CodecOpus:
			found++
			tr.OnDataOpus(t, func(pts int64, pkts [][]byte) error {
				onAudio(pts, pkts)
				return nil
			})
		}
	}
	if found != 2 {
		return errors.New("MPEG-TS from ffmpeg lacks H.264 or Opus")
	}
	for {
		if err := tr.Read(); err != nil {
			return err
		}
	}
}
