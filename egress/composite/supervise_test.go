package composite

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// encoderPID is the composite encoder among this process's ffmpegs.
func encoderPID() int {
	for _, pid := range childFFmpegs() {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if strings.Contains(string(b), "libx264") {
			return pid
		}
	}
	return 0
}

// A host without a camera gets a placeholder tile and is heard; when the
// encoder dies it is restarted and the output stream goes on (same
// stream, readers not ended, frames flowing again).
func TestPlaceholderAndEncoderRestart(t *testing.T) {
	needFFmpeg(t)
	red := makeClip(t, "red", 440)
	voice := makeClip(t, "black", 1000)
	m, hub, fl := newManager(t, Params{})
	const w, h = 640, 360
	if _, _, err := m.Start("pod", Options{Width: w, Height: h, FPS: 25}); err != nil {
		t.Fatal(err)
	}
	publishClip(t, hub, "pod/alice", red)
	// bob: Opus only.
	samples, err := clip.LoadOpus(voice + "/clip.ogg")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hub.Publish("pod/bob", framestest.Tracks[1:], nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	played := make(chan struct{})
	go func() {
		defer close(played)
		ap := frames.NewPacketizer(codec.MimeOpus, 111)
		var ts uint32
		_ = clip.Play(ctx, samples, func(s clip.Sample, _ int) error {
			for _, p := range ap.Packetize(ts, [][]byte{s.Data}) {
				pub.WriteRTP(0, &p.Header, p.Payload)
			}
			ts += uint32(s.Duration * 48000 / time.Second)
			return nil
		})
	}()
	defer func() { cancel(); <-played; pub.End("test over") }()

	c := startCapture(t, fl, hub, "pod/composite")
	time.Sleep(3 * time.Second)
	in, _ := m.Get("pod")
	if len(in.Tiles) != 2 || in.Tiles[1].Host != "bob" || in.Tiles[1].Video || !in.Tiles[1].Audio {
		t.Fatalf("tiles: %+v", in.Tiles)
	}
	pic := lastPicture(t, c.vf, w, h)
	// bob's tile (right half): grey placeholder around its head outline.
	if y := pic[(h/10)*w+3*w/4]; y < 45 || y > 75 {
		t.Errorf("placeholder tile luma %d, want the placeholder grey (60)", y)
	}
	if u, v := colourAt(pic, w, h, w/4, h/2); v < 200 {
		t.Errorf("alice's tile U,V = %d,%d", u, v)
	}
	lv := toneLevels(t, c.af, 440, 1000)
	if lv[0] < 0.05 || lv[1] < 0.05 {
		t.Errorf("both hosts should be heard (bob has no camera): %v", lv)
	}

	pid := encoderPID()
	if pid == 0 {
		t.Fatal("no encoder process found")
	}
	before := c.videoAUs.Load()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Poll(t, 15*time.Second, func() string {
		in, _ = m.Get("pod")
		if in.EncoderStarts == 2 && in.State == StateLive && c.videoAUs.Load() > before+25 {
			return ""
		}
		return fmt.Sprintf("after the encoder was killed: %+v, %d frames after", in, c.videoAUs.Load()-before)
	})
	t.Logf("encoder restarted (%s); output frames flowing again", in.LastError)
	c.finish()
	if c.ended {
		t.Error("the output stream's readers were ended by the encoder restart")
	}
}

// A show with hosts joining and leaving every second or two: one encoder
// throughout, the output never ends and keeps its frame rate.
// LIVEGATE_SHOW_SECS makes it longer (e.g. 600 for the 10-minute goal).
func TestChurnKeepsOneEncoder(t *testing.T) {
	needFFmpeg(t)
	secs := 12
	if v, err := strconv.Atoi(os.Getenv("LIVEGATE_SHOW_SECS")); err == nil && v > 0 {
		secs = v
	}
	clips := []string{makeClip(t, "red", 440), makeClip(t, "blue", 660), makeClip(t, "lime", 880)}
	m, hub, fl := newManager(t, Params{})
	const fps = 20
	if _, _, err := m.Start("churn", Options{Width: 640, Height: 360, FPS: fps}); err != nil {
		t.Fatal(err)
	}
	publishClip(t, hub, "churn/anchor", clips[0])
	c := startCapture(t, fl, hub, "churn/composite")
	start, n0 := time.Now(), c.videoAUs.Load()
	var leave []func()
	for i := 0; time.Since(start) < time.Duration(secs)*time.Second; i++ {
		if i%3 == 2 && len(leave) > 0 {
			leave[0]()
			leave = leave[1:]
		} else {
			leave = append(leave, publishClip(t, hub, "churn/guest"+strconv.Itoa(i), clips[1+i%2]))
		}
		time.Sleep(1500 * time.Millisecond)
	}
	elapsed := time.Since(start)
	got := c.videoAUs.Load() - n0
	c.finish()
	in, _ := m.Get("churn")
	t.Logf("%v show: %d layout changes, %d output frames (%.1f fps), encoder starts %d, frames skipped %d",
		elapsed.Round(time.Second), in.LayoutChanges, got, float64(got)/elapsed.Seconds(), in.EncoderStarts, in.FramesSkipped)
	if c.ended || in.EncoderStarts != 1 {
		t.Errorf("the output restarted: ended %v, encoder starts %d (%s)", c.ended, in.EncoderStarts, in.LastError)
	}
	if want := int64(elapsed.Seconds() * fps * 0.9); got < want {
		t.Errorf("%d frames over %v, want at least %d", got, elapsed, want)
	}
}
