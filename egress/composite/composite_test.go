package composite

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestArrange(t *testing.T) {
	g := arrange(Grid, []string{"a", "b"}, "", 1280, 720)
	if g[0] != (Rect{0, 0, 640, 720}) || g[1] != (Rect{640, 0, 640, 720}) {
		t.Fatalf("grid of 2: %v", g)
	}
	g = arrange(Grid, []string{"a", "b", "c"}, "", 1280, 720)
	if g[2] != (Rect{320, 360, 640, 360}) {
		t.Fatalf("grid of 3: last row not centred: %v", g)
	}
	many := make([]string, 11)
	for i := range many {
		many[i] = fmt.Sprint("h", i)
	}
	g = arrange(Grid, many, "", 1280, 720)
	if !g[9].empty() || g[8].empty() || g[8].W != 426 {
		t.Fatalf("grid of 11: %v", g)
	}
	s := arrange(Speaker, []string{"a", "b", "bob-screen"}, "a", 1280, 720)
	if s[2] != (Rect{0, 0, 1280, 540}) || s[0].H != 180 || s[1].H != 180 || s[0].Y != 540 {
		t.Fatalf("speaker with a screen share: %v", s)
	}
	s = arrange(Speaker, []string{"a", "b"}, "b", 1280, 720)
	if s[1].W != 1280 || s[0].W != 320 {
		t.Fatalf("speaker chosen: %v", s)
	}
}

func TestParseRule(t *testing.T) {
	r, err := ParseRule("show-*?layout=speaker&size=640x360&fps=15")
	if err != nil || r.Pattern != "show-*" || r.Options.Layout != Speaker || r.Options.Width != 640 || r.Options.FPS != 15 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "a/b", "x?size=641x360", "x?fps=0x", "x?color=red", "x?layout=mosaic"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNoFFmpeg(t *testing.T) {
	hub := relay.NewHub(relay.Params{})
	defer hub.Close()
	m := New(Params{Hub: hub, Frames: frames.New(frames.Params{}), FFmpeg: "-"})
	defer m.Close()
	if _, _, err := m.Start("r", Options{}); err != ErrNoFFmpeg {
		t.Fatalf("got %v, want ErrNoFFmpeg", err)
	}
}

func needFFmpeg(t *testing.T) { t.Helper(); testenv.Need(t, "ffmpeg") }

// makeClip writes a solid-colour H.264 clip with a sine tone as
// clip.h264 + clip.ogg in a new directory.
func makeClip(t *testing.T, color string, hz int) string {
	t.Helper()
	dir := t.TempDir()
	testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", "color=c="+color+":s=640x360:r=30", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
		"-profile:v", "baseline", "-g", "30", "-pix_fmt", "yuv420p", "-f", "h264", filepath.Join(dir, "clip.h264"))
	testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", fmt.Sprintf("sine=f=%d:r=48000", hz), "-t", "4", "-ac", "2", "-c:a", "libopus", "-b:a", "64k",
		"-frame_duration", "20", "-page_duration", "20000", "-f", "ogg", filepath.Join(dir, "clip.ogg"))
	return dir
}

// newManager starts a composite manager with p on a new hub and frame
// layer; all close when the test ends. The test clips cannot answer
// keyframe requests, so the hub starts new readers from the GOP cache at
// once, as after a WebRTC host's quick answer.
func newManager(t *testing.T, p Params) (*Manager, *relay.Hub, *frames.Layer) {
	t.Helper()
	hub := relay.NewHub(relay.Params{KeyframeWait: -1})
	t.Cleanup(hub.Close)
	p.Hub, p.Frames = hub, frames.New(frames.Params{})
	if p.Logger == nil {
		p.Logger = quietLogger()
	}
	m := New(p)
	t.Cleanup(m.Close)
	return m, p.Hub, p.Frames
}

// publishClip plays dir's clip into path until the test ends or stop.
func publishClip(t *testing.T, hub *relay.Hub, path, dir string) (stop func()) {
	t.Helper()
	c, err := framestest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, stop, err = c.Start(hub, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return stop
}

// capture records the output stream's video (Annex-B) and audio (Ogg)
// while it runs.
type capture struct {
	vr, ar   *frames.Reader
	vf, af   string
	stop     context.CancelFunc
	done     chan struct{}
	videoAUs atomic.Int64
	ended    bool // the output's frames ended (a restart would show here)
}

func startCapture(t *testing.T, fl *frames.Layer, hub *relay.Hub, path string) *capture {
	t.Helper()
	var st *relay.Stream
	testenv.WaitFor(t, 20*time.Second, path+" live", func() bool {
		s, ok := hub.Get(path)
		st = s
		return ok && s.Live()
	})
	tracks := st.Tracks()
	vr, err := fl.Subscribe(st, tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	ar, err := fl.Subscribe(st, tracks[1])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &capture{vr: vr, ar: ar, vf: filepath.Join(dir, "v.h264"), af: filepath.Join(dir, "a.ogg"), done: make(chan struct{})}
	vfile, err := os.Create(c.vf)
	if err != nil {
		t.Fatal(err)
	}
	afile, err := os.Create(c.af)
	if err != nil {
		t.Fatal(err)
	}
	ogg, err := oggwriter.NewWith(afile, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go func() {
		defer close(c.done)
		defer vr.Close()
		defer ar.Close()
		defer vfile.Close()
		defer ogg.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-vr.Done():
				c.ended = true
				return
			case f := <-vr.Frames():
				for _, u := range f.Units {
					_, _ = vfile.Write([]byte{0, 0, 0, 1})
					_, _ = vfile.Write(u)
				}
				c.videoAUs.Add(1)
			case f := <-ar.Frames():
				_ = ogg.WriteRTP(&rtp.Packet{Payload: f.Units[0]})
			}
		}
	}()
	return c
}

func (c *capture) finish() {
	c.stop()
	<-c.done
}

// lastPicture decodes the capture's last video frame to I420 at w x h.
func lastPicture(t *testing.T, file string, w, h int) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "h264", "-i", file,
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", fmt.Sprintf("%dx%d", w, h), "pipe:1").Output()
	if err != nil {
		t.Fatalf("decoding the composite: %v", err)
	}
	n := frameSize(w, h)
	if len(out) < n {
		t.Fatalf("no picture decoded from the composite (%d bytes)", len(out))
	}
	return out[len(out)-n:]
}

// colourAt is the (U, V) of a picture at x, y.
func colourAt(pic []byte, w, h, x, y int) (u, v int) {
	q := (w / 2) * (h / 2)
	i := (y/2)*(w/2) + x/2
	return int(pic[w*h+i]), int(pic[w*h+q+i])
}

// toneLevels decodes the capture's audio and measures the power at each
// frequency (Goertzel), relative to the signal's total power.
func toneLevels(t *testing.T, file string, hz ...int) []float64 {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", file,
		"-f", "s16le", "-ac", "1", "-ar", "48000", "pipe:1").Output()
	if err != nil {
		t.Fatalf("decoding the composite's audio: %v", err)
	}
	n := len(out) / 2
	if n < 48000 {
		t.Fatalf("only %d audio samples in the composite", n)
	}
	x := make([]float64, n)
	var total float64
	for i := range x {
		x[i] = float64(int16(binary.LittleEndian.Uint16(out[2*i:])))
		total += x[i] * x[i]
	}
	var res []float64
	for _, f := range hz {
		w := 2 * math.Pi * float64(f) / 48000
		var s1, s2 float64
		for _, v := range x {
			s := v + 2*math.Cos(w)*s1 - s2
			s2, s1 = s1, s
		}
		p := s1*s1 + s2*s2 - 2*math.Cos(w)*s1*s2
		res = append(res, p/(total*float64(n)/2+1))
	}
	return res
}

func quietLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Two hosts with different pictures and tones: the composite shows each
// in its tile and carries both tones; a third host changes the layout
// within a second while the output runs on (one encoder, no end).
func TestCompositeHostsJoin(t *testing.T) {
	needFFmpeg(t)
	red, blue, green := makeClip(t, "red", 440), makeClip(t, "blue", 1000), makeClip(t, "lime", 2500)
	// The clips cannot answer keyframe requests: new readers start from
	// the GOP cache at once, as they would after a WebRTC host's quick
	// answer.
	m, hub, fl := newManager(t, Params{})
	const w, h = 640, 360
	if _, created, err := m.Start("show", Options{Width: w, Height: h, FPS: 25, VideoBitrate: 800_000}); err != nil || !created {
		t.Fatalf("start: %v %v", created, err)
	}
	publishClip(t, hub, "show/alice", red)
	publishClip(t, hub, "show/bob", blue)
	c := startCapture(t, fl, hub, "show/composite")
	// Both hosts' pictures and sounds are in the output.
	time.Sleep(4 * time.Second)
	pic := lastPicture(t, c.vf, w, h)
	if u, v := colourAt(pic, w, h, w/4, h/2); v < 200 {
		t.Errorf("left tile (alice, red) has U,V = %d,%d", u, v)
	}
	if u, v := colourAt(pic, w, h, 3*w/4, h/2); u < 200 {
		t.Errorf("right tile (bob, blue) has U,V = %d,%d", u, v)
	}
	lv := toneLevels(t, c.af, 440, 1000, 700)
	t.Logf("tone power 440 Hz %.3f, 1000 Hz %.3f, 700 Hz (none) %.5f", lv[0], lv[1], lv[2])
	if lv[0] < 0.05 || lv[1] < 0.05 || lv[2] > 0.01 {
		t.Errorf("both tones should be heard: %v", lv)
	}
	// A third host: the layout changes within a second.
	before, _ := m.Get("show")
	joined := time.Now()
	publishClip(t, hub, "show/carol", green)
	var changed time.Duration
	for time.Since(joined) < 5*time.Second {
		in, _ := m.Get("show")
		if len(in.Tiles) == 3 && in.LayoutChanges > before.LayoutChanges {
			changed = time.Since(joined)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	slack := time.Duration(1)
	if raceEnabled {
		slack = 5
	}
	if changed == 0 || changed > time.Second {
		t.Errorf("layout followed the third host after %v", changed)
	}
	// Its picture is on screen within a second of the layout (bottom
	// row centred: carol at the bottom middle).
	var seen time.Duration
	for time.Since(joined) < slack*5*time.Second {
		time.Sleep(200 * time.Millisecond)
		pic := lastPicture(t, c.vf, w, h)
		if u, v := colourAt(pic, w, h, w/2, 3*h/4); u < 100 && v < 100 {
			seen = time.Since(joined)
			break
		}
	}
	t.Logf("layout changed %v after the join, picture seen %v after", changed, seen)
	if seen == 0 || seen > slack*1500*time.Millisecond {
		t.Errorf("third host's picture seen after %v", seen)
	}
	c.finish()
	in, _ := m.Get("show")
	if c.ended || in.EncoderStarts != 1 {
		t.Errorf("output restarted: ended %v, encoder starts %d", c.ended, in.EncoderStarts)
	}
	if _, err := m.Stop("show"); err != nil {
		t.Fatal(err)
	}
}

// A rule composites matching rooms while they have hosts.
func TestRuleFollowsHosts(t *testing.T) {
	needFFmpeg(t)
	clip := makeClip(t, "red", 440)
	rule, err := ParseRule("party-*?size=320x180&fps=15")
	if err != nil {
		t.Fatal(err)
	}
	m, hub, fl := newManager(t, Params{Rules: []Rule{rule}, Linger: time.Second})
	publishClip(t, hub, "other/alice", clip)
	stop := publishClip(t, hub, "party-1/alice", clip)
	c := startCapture(t, fl, hub, "party-1/composite")
	in, err := m.Get("party-1")
	if err != nil || in.StartedBy != "rule" || in.Opts.Width != 320 {
		t.Fatalf("rule composite: %+v %v", in, err)
	}
	if _, err := m.Get("other"); err != ErrNotFound {
		t.Errorf("a room no rule matches got a composite: %v", err)
	}
	time.Sleep(time.Second)
	stop()
	testenv.WaitFor(t, 5*time.Second, "the rule composite to stop after its room emptied", func() bool {
		_, err := m.Get("party-1")
		return err == ErrNotFound
	})
	c.finish()
	if c.videoAUs.Load() == 0 {
		t.Error("no video from the rule composite")
	}
}

// Speaker layout: a screen share, when it starts, takes the large tile.
func TestSpeakerFollowsScreenShare(t *testing.T) {
	needFFmpeg(t)
	red, blue := makeClip(t, "red", 440), makeClip(t, "blue", 1000)
	m, hub, fl := newManager(t, Params{})
	const w, h = 640, 360
	if _, _, err := m.Start("talk", Options{Layout: Speaker, Speaker: "bob", Width: w, Height: h, FPS: 25}); err != nil {
		t.Fatal(err)
	}
	publishClip(t, hub, "talk/alice", red)
	publishClip(t, hub, "talk/bob", red)
	c := startCapture(t, fl, hub, "talk/composite")
	in, _ := m.Get("talk")
	if len(in.Tiles) != 2 || in.Tiles[1].Rect.W != w {
		t.Fatalf("speaker bob should be large: %+v", in.Tiles)
	}
	shared := time.Now()
	publishClip(t, hub, "talk/alice-screen", blue)
	var seen time.Duration
	for time.Since(shared) < 5*time.Second {
		time.Sleep(200 * time.Millisecond)
		pic := lastPicture(t, c.vf, w, h)
		if u, _ := colourAt(pic, w, h, w/2, h/3); u > 200 {
			seen = time.Since(shared)
			break
		}
	}
	c.finish()
	in, _ = m.Get("talk")
	t.Logf("screen share large on screen %v after it started; tiles %+v", seen, in.Tiles)
	if seen == 0 {
		t.Fatal("the screen share never took the large tile")
	}
	for _, tl := range in.Tiles {
		if (tl.Host == "alice-screen") != (tl.Rect.W == w) {
			t.Errorf("tile %+v", tl)
		}
	}
}
