package composite

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
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
	hub := relay.NewHub(relay.Params{KeyframeWait: -1})
	defer hub.Close()
	fl := frames.New(frames.Params{})
	m := New(Params{Hub: hub, Frames: fl, Logger: quietLogger()})
	defer m.Close()
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
	deadline := time.Now().Add(15 * time.Second)
	for {
		in, _ = m.Get("pod")
		if in.EncoderStarts == 2 && in.State == StateLive && c.videoAUs.Load() > before+25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the encoder was killed: %+v, %d frames after", in, c.videoAUs.Load()-before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("encoder restarted (%s); output frames flowing again", in.LastError)
	c.finish()
	if c.ended {
		t.Error("the output stream's readers were ended by the encoder restart")
	}
}
