package composite

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/codec"
)

// TestAVSync: a host's picture turns blue at the moment its tone starts;
// in the composite (by the encoder's timestamps) the first blue frame and
// the first tone packet are within lip-sync tolerance of each other.
func TestAVSync(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", "color=c=red:s=640x360:r=30:d=3[r];color=c=blue:s=640x360:r=30:d=3[b];[r][b]concat=n=2:v=1:a=0",
		"-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline", "-g", "30", "-pix_fmt", "yuv420p",
		"-f", "h264", filepath.Join(dir, "clip.h264"))
	testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo:d=3[s];sine=f=1000:r=48000:d=3,aformat=channel_layouts=stereo[t];[s][t]concat=n=2:v=0:a=1",
		"-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-page_duration", "20000", "-f", "ogg", filepath.Join(dir, "clip.ogg"))
	m, hub, _ := newManager(t, Params{})
	// The encoder's output with its own timestamps: both tracks are on
	// the MPEG-TS clock, so a skew between them is one in the content.
	var mu sync.Mutex
	var vPTS, aPTS []int64
	var annexB bytes.Buffer
	var oggBuf bytes.Buffer
	ogg, err := oggwriter.NewWith(&oggBuf, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.tap = func(video bool, pts int64, units [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		if video {
			for _, u := range units {
				annexB.Write([]byte{0, 0, 0, 1})
				annexB.Write(u)
			}
			vPTS = append(vPTS, pts)
			return
		}
		for _, u := range units {
			_ = ogg.WriteRTP(&rtp.Packet{Payload: u})
			aPTS = append(aPTS, pts)
			pts += codec.OpusSamples(u) * 90000 / 48000
		}
	}
	const w, h = 320, 180
	if _, _, err := m.Start("sync", Options{Width: w, Height: h, FPS: 30}); err != nil {
		t.Fatal(err)
	}
	publishClip(t, hub, "sync/host", dir)
	time.Sleep(8 * time.Second)
	if _, err := m.Stop("sync"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	_ = ogg.Close()
	vf, af := filepath.Join(dir, "out.h264"), filepath.Join(dir, "out.ogg")
	if err := os.WriteFile(vf, annexB.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(af, oggBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// Video: the first blue frame after a red one.
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "h264", "-i", vf,
		"-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1").Output()
	if err != nil {
		t.Fatal(err)
	}
	n := frameSize(w, h)
	vi, red := -1, false
	for i := 0; (i+1)*n <= len(out); i++ {
		u, v := colourAt(out[i*n:(i+1)*n], w, h, w/2, h/2)
		if v > 200 {
			red = true
		} else if red && u > 200 {
			vi = i
			break
		}
	}
	// Audio: the first loud 20 ms after a quiet one.
	pcm, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", af, "-f", "s16le", "-ac", "1", "-ar", "48000", "pipe:1").Output()
	if err != nil {
		t.Fatal(err)
	}
	ai, quiet := -1, false
	for k := 0; (k+1)*1920 <= len(pcm); k++ {
		var peak int
		for i := k * 1920; i < (k+1)*1920; i += 2 {
			peak = max(peak, abs(int(int16(binary.LittleEndian.Uint16(pcm[i:])))))
		}
		if peak < 300 {
			quiet = true
		} else if quiet && peak > 1500 {
			ai = k
			break
		}
	}
	if vi < 0 || ai < 0 || vi >= len(vPTS) || ai >= len(aPTS) {
		t.Fatalf("no transition found: video frame %d of %d, audio packet %d of %d", vi, len(vPTS), ai, len(aPTS))
	}
	skew := time.Duration(aPTS[ai]-vPTS[vi]) * time.Second / 90000
	t.Logf("in the composite the tone starts %v after the blue picture (positive: audio late)", skew)
	// ITU-R BT.1359: detectable beyond +45 ms (audio early) / -125 ms (late).
	if skew > 125*time.Millisecond || skew < -45*time.Millisecond {
		t.Errorf("A/V skew %v", skew)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
