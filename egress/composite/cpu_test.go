package composite

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

// cpuTicks is utime+stime of pid in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// childFFmpegs are this process's ffmpeg children.
func childFFmpegs() []int {
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		if !strings.Contains(s, "(ffmpeg)") {
			continue
		}
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, pid)
		}
	}
	return out
}

// TestCompositeCPU measures what a composite of four 1280x720 30 fps
// hosts costs (not a pass/fail test; LIVEGATE_COMPOSITE_CPU=WxH@FPS/preset,
// e.g. 1280x720@30/veryfast, runs it). The hosts are published straight
// into the hub, so the Go figure is the composite's own work (composing,
// mixing, demuxing, packetising) plus the clip players.
func TestCompositeCPU(t *testing.T) {
	spec := os.Getenv("LIVEGATE_COMPOSITE_CPU")
	if spec == "" {
		t.Skip("set LIVEGATE_COMPOSITE_CPU=1280x720@30/veryfast to measure")
	}
	needFFmpeg(t)
	var w, h, fps int
	var preset string
	// A "+noise" suffix adds moving grain to the hosts' pictures: far
	// harder to encode than any camera (a worst case).
	spec, noisy := strings.CutSuffix(spec, "+noise")
	if _, err := fmt.Sscanf(strings.NewReplacer("x", " ", "@", " ", "/", " ").Replace(spec), "%d %d %d %s", &w, &h, &fps, &preset); err != nil {
		t.Fatalf("LIVEGATE_COMPOSITE_CPU=%q: %v", spec, err)
	}
	m, hub, fl := newManager(t, Params{Preset: preset})
	for i, hz := range []int{440, 660, 880, 1100} {
		dir := t.TempDir()
		src := fmt.Sprintf("testsrc2=s=1280x720:r=30,hue=h=%d", i*90)
		if noisy {
			src += ",noise=alls=12:allf=t"
		}
		testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", src, "-t", "10",
			"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "baseline", "-b:v", "2500k", "-g", "60",
			"-pix_fmt", "yuv420p", "-f", "h264", filepath.Join(dir, "clip.h264"))
		testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i",
			fmt.Sprintf("sine=f=%d:r=48000", hz), "-t", "10", "-ac", "2", "-c:a", "libopus", "-b:a", "64k",
			"-frame_duration", "20", "-page_duration", "20000", "-f", "ogg", filepath.Join(dir, "clip.ogg"))
		publishClip(t, hub, fmt.Sprintf("cpu/host%d", i), dir)
	}
	if _, _, err := m.Start("cpu", Options{Width: w, Height: h, FPS: fps}); err != nil {
		t.Fatal(err)
	}
	c := startCapture(t, fl, hub, "cpu/composite")
	time.Sleep(5 * time.Second)
	kids := childFFmpegs()
	k0, s0, t0 := int64(0), cpuTicks(os.Getpid()), time.Now()
	for _, p := range kids {
		k0 += cpuTicks(p)
	}
	n0 := c.videoAUs.Load()
	const window = 20 * time.Second
	time.Sleep(window)
	k1, s1 := int64(0), cpuTicks(os.Getpid())
	for _, p := range kids {
		k1 += cpuTicks(p)
	}
	secs := time.Since(t0).Seconds()
	n1 := c.videoAUs.Load()
	c.finish()
	in, _ := m.Get("cpu")
	if noisy {
		spec += "+noise"
	}
	t.Logf("%s: %d ffmpeg processes %.2f cores, Go process %.2f cores, output %.1f fps, frames skipped %d, encoder starts %d, load %s",
		spec, len(kids), float64(k1-k0)/100/secs, float64(s1-s0)/100/secs, float64(n1-n0)/secs, in.FramesSkipped, in.EncoderStarts, loadavg())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
