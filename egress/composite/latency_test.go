package composite

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// TestCompositeLatency: a host's picture turns from red to blue at a
// known moment; the composite shows it this much later (measured by
// decoding the output as it arrives, so the bound includes one more
// decode).
func TestCompositeLatency(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i",
		"color=c=red:s=640x360:r=30:d=3[r];color=c=blue:s=640x360:r=30:d=3[b];[r][b]concat=n=2:v=1:a=0",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline", "-g", "30",
		"-pix_fmt", "yuv420p", "-f", "h264", filepath.Join(dir, "clip.h264"))
	clipAUs, err := loadAUs(filepath.Join(dir, "clip.h264"))
	if err != nil {
		t.Fatal(err)
	}
	m, hub, fl := newManager(t, Params{})
	const w, h = 640, 360
	if _, _, err := m.Start("lat", Options{Width: w, Height: h, FPS: 30}); err != nil {
		t.Fatal(err)
	}
	pub, err := hub.Publish("lat/host", framestest.Tracks[:1], nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.End("test over")
	// Play: frame 90 is the first blue one.
	blueAt := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	played := make(chan struct{})
	go func() {
		defer close(played)
		vp := frames.NewPacketizer(codec.MimeH264, 96)
		start := time.Now()
		for i, au := range clipAUs {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / 30)); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			if i == 90 {
				blueAt <- time.Now()
			}
			for _, p := range vp.Packetize(uint32(i*3000), au) {
				pub.WriteRTP(0, &p.Header, p.Payload)
			}
		}
	}()
	var st *relay.Stream
	waitUntil(t, 20*time.Second, func() bool {
		s, ok := hub.Get("lat/composite")
		st = s
		return ok && s.Live()
	})
	vr, err := fl.Subscribe(st, st.Tracks()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer vr.Close()
	dec := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "1",
		"-fpsprobesize", "0", "-threads", "1", "-f", "h264", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "yuv420p",
		"-fps_mode", "passthrough", "-flush_packets", "1", "pipe:1")
	stdin, _ := dec.StdinPipe()
	stdout, _ := dec.StdoutPipe()
	if err := dec.Start(); err != nil {
		t.Fatal(err)
	}
	fed := make(chan struct{})
	defer func() {
		cancel()
		<-played
		<-fed
		_ = stdin.Close()
		_ = dec.Wait()
	}()
	go func() {
		defer close(fed)
		for {
			select {
			case <-ctx.Done():
				return
			case f := <-vr.Frames():
				for _, u := range f.Units {
					_, _ = stdin.Write(append([]byte{0, 0, 0, 1}, u...))
				}
				_, _ = stdin.Write(aud)
			}
		}
	}()
	var switched time.Time
	pic := make([]byte, frameSize(w, h))
	for {
		if _, err := io.ReadFull(stdout, pic); err != nil {
			t.Fatalf("decoding the composite: %v", err)
		}
		if u, _ := colourAt(pic, w, h, w/2, h/2); u > 200 {
			switched = time.Now()
			break
		}
	}
	lat := switched.Sub(<-blueAt)
	t.Logf("host picture change shown by the composite after %v (load %s)", lat, loadavg())
	limit := 600 * time.Millisecond
	if raceEnabled {
		limit *= 3
	}
	if lat > limit {
		t.Errorf("composite latency %v, want < %v", lat, limit)
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loadAUs reads an Annex-B file as access units (NAL units each).
func loadAUs(path string) ([][][]byte, error) {
	c, err := clip.LoadH264(path)
	if err != nil {
		return nil, err
	}
	out := make([][][]byte, 0, len(c))
	for _, s := range c {
		var au h264.AnnexB
		if err := au.Unmarshal(s.Data); err != nil {
			return nil, err
		}
		out = append(out, au)
	}
	return out, nil
}
