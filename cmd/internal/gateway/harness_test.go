package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
	"github.com/livegate/livegate/relay/rtcclient/rtcclienttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testGateway is a gateway on loopback ports chosen by the kernel.
type testGateway struct {
	*Gateway
	base   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startGateway(t *testing.T, mutate func(*Config)) *testGateway {
	t.Helper()
	cfg := Config{
		HTTP: "127.0.0.1:0", WebRTCUDP: "127.0.0.1:0", WebRTCIPs: []string{"127.0.0.1"},
		ConnectTimeout: 10 * time.Second, RecordDir: t.TempDir(),
		RecorderParams: RecorderParams{SpoolDir: t.TempDir()},
		// As cmd/livegate's default, so outputs meet browser hosts as in production.
		RelayParams: RelayParams{Grace: 10 * time.Second, KeyframeMaxInterval: 2 * time.Second},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	g, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tg := &testGateway{Gateway: g, base: "http://" + g.HTTPAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { tg.done <- g.Run(ctx) }()
	t.Cleanup(tg.stop)
	return tg
}

func (g *testGateway) stop() {
	g.once.Do(func() {
		g.cancel()
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
			panic("gateway did not stop within 10 s")
		}
		httpClient.CloseIdleConnections()
	})
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

var (
	apiOnce sync.Once
	api     *webrtc.API
	apiErr  error
)

func clientOpts(t *testing.T) rtcclient.Options {
	apiOnce.Do(func() { api, apiErr = rtcclient.LoopbackAPI(nil) })
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	return rtcclient.Options{API: api, HTTP: httpClient}
}

// testClip is the shipped H.264 + Opus clip.
type testClip struct {
	video, audio []clip.Sample
}

var (
	clipOnce sync.Once
	theClip  testClip
	clipErr  error
)

func loadClip(t *testing.T) testClip {
	t.Helper()
	clipOnce.Do(func() {
		theClip.video, clipErr = clip.LoadH264("../../../testdata/clip.h264")
		if clipErr == nil {
			theClip.audio, clipErr = clip.LoadOpus("../../../testdata/clip.ogg")
		}
	})
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return theClip
}

// publish connects a WHIP publisher for path.
func (g *testGateway) publish(t *testing.T, path string) *rtcclient.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := rtcclient.Publish(ctx, g.base+"/whip/"+path, clientOpts(t), rtcclient.H264ConstrainedBaseline, true)
	if err != nil {
		t.Fatalf("publish %s: %v", path, err)
	}
	waitConnected(t, p.PC)
	return p
}

// play sends the clip in real time: frames [from, to) of video and the
// matching audio, until done. It returns when ctx ends or the range is sent.
func play(ctx context.Context, p *rtcclient.Publisher, c testClip, frames int) {
	var wg sync.WaitGroup
	wg.Add(2)
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer wg.Done()
		defer cancel() // audio stops with video
		n := 0
		_ = clip.Play(vctx, c.video, func(s clip.Sample, _ int) error {
			if frames > 0 && n >= frames {
				return io.EOF
			}
			n++
			return p.WriteVideo(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	go func() {
		defer wg.Done()
		_ = clip.Play(vctx, c.audio, func(s clip.Sample, _ int) error {
			return p.WriteAudio(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	wg.Wait()
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("peer connection state %s after 10 s", pc.ConnectionState())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// frame is one H.264 access unit as a viewer reassembled it.
type frame struct {
	nalus    [][]byte
	at       time.Time
	complete bool // no sequence gap inside
}

func (f frame) keyframe() bool {
	for _, n := range f.nalus {
		if len(n) > 0 && n[0]&0x1f == 5 {
			return true
		}
	}
	return false
}

// viewer is the tests' WHEP viewer (rtcclienttest), its frames in the
// harness's form.
type viewer struct {
	*rtcclienttest.Viewer
}

func (g *testGateway) view(t *testing.T, path string) *viewer {
	t.Helper()
	v, err := g.tryView(t, path)
	if err != nil {
		t.Fatalf("view %s: %v", path, err)
	}
	return v
}

func (g *testGateway) tryView(t *testing.T, path string) (*viewer, error) {
	return dialViewer(t, g.base+"/whep/"+path, clientOpts(t))
}

// dialViewer plays a WHEP endpoint until the test ends.
func dialViewer(t *testing.T, endpoint string, opts rtcclient.Options) (*viewer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rv, err := rtcclienttest.Dial(ctx, endpoint, opts)
	if err != nil {
		return nil, err
	}
	v := &viewer{rv}
	t.Cleanup(v.close)
	return v, nil
}

func (v *viewer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = v.Close(ctx)
}

func (v *viewer) snapshot() ([]frame, [][]byte, []rtp.Header) {
	fs, audio, video := v.Snapshot()
	frames := make([]frame, len(fs))
	for i, f := range fs {
		frames[i] = frame{nalus: f.NALUs, at: f.At, complete: f.Complete}
	}
	return frames, audio, video
}

// splitAnnexB returns the NAL units of an Annex-B buffer.
var splitAnnexB = rtcclienttest.SplitAnnexB

// sentNALUs is what a viewer should reassemble for a clip access unit:
// every NAL unit but access unit delimiters and filler, which RTP drops.
func sentNALUs(au []byte) [][]byte {
	var out [][]byte
	for _, n := range splitAnnexB(au) {
		if t := n[0] & 0x1f; t != 9 && t != 12 {
			out = append(out, n)
		}
	}
	return out
}

func sameNALUs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
