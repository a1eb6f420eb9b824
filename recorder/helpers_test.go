package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/recorder/storage"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	h264Info = relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
		Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}
	opusInfo = relay.TrackInfo{Kind: codec.Audio, Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}}
)

// testDir is t.TempDir(), or a kept directory below $LIVEGATE_TEST_KEEP
// for looking at the files after the test.
func testDir(t *testing.T) string {
	if keep := os.Getenv("LIVEGATE_TEST_KEEP"); keep != "" {
		d := filepath.Join(keep, t.Name())
		_ = os.RemoveAll(d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newHub(t *testing.T) *relay.Hub {
	h := relay.NewHub(relay.Params{Logger: testLogger(), Grace: 5 * time.Second})
	t.Cleanup(h.Close)
	return h
}

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}

var (
	clipOnce             sync.Once
	clipVideo, clipAudio []clip.Sample
	clipErr              error
)

func loadClip(t *testing.T) ([]clip.Sample, []clip.Sample) {
	t.Helper()
	clipOnce.Do(func() {
		clipVideo, clipErr = clip.LoadH264("../testdata/clip.h264")
		if clipErr == nil {
			clipAudio, clipErr = clip.LoadOpus("../testdata/clip.ogg")
		}
	})
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipVideo, clipAudio
}

// feeder publishes the looped test clip into a hub as RTP, as a WHIP
// publisher would (with RTCP sender reports every second), at speed times
// real time. Its clock is continuous across publications (reconnects).
type feeder struct {
	t            *testing.T
	video, audio []clip.Sample
	vpay         codecs.H264Payloader
	vseq, aseq   uint16
	vts0, ats0   uint32
	ntp0         time.Time
	media        time.Duration // media time fed so far
	nextSR       time.Duration
	vi, ai       int
	vt, at       time.Duration // media time of the next video / audio sample
}

func newFeeder(t *testing.T) *feeder {
	v, a := loadClip(t)
	return &feeder{t: t, video: v, audio: a, vts0: 123456, ats0: 987654, ntp0: time.Now()}
}

// feed sends dur of media to pub, sleeping to keep to speed x real time.
func (f *feeder) feed(pub *relay.Publication, dur time.Duration, speed float64) {
	start, from := time.Now(), f.media
	end := f.media + dur
	for f.vt < end || f.at < end {
		if f.vt <= f.at {
			s := f.video[f.vi%len(f.video)]
			ts := f.vts0 + uint32(f.vt*90000/time.Second)
			payloads := f.vpay.Payload(1200, s.Data)
			for i, p := range payloads {
				f.vseq++
				pub.WriteRTP(0, &rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: f.vseq, Timestamp: ts,
					Marker: i == len(payloads)-1}, p)
			}
			f.vt += s.Duration
			f.vi++
		} else {
			s := f.audio[f.ai%len(f.audio)]
			f.aseq++
			ts := f.ats0 + uint32(f.at*48000/time.Second)
			pub.WriteRTP(1, &rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: f.aseq, Timestamp: ts}, s.Data)
			f.at += s.Duration
			f.ai++
		}
		f.media = min(f.vt, f.at)
		if f.media >= f.nextSR {
			ntp := toNTP(f.ntp0.Add(f.media))
			pub.WriteSenderReport(0, ntp, f.vts0+uint32(f.media*90000/time.Second))
			pub.WriteSenderReport(1, ntp, f.ats0+uint32(f.media*48000/time.Second))
			f.nextSR += time.Second
		}
		if ahead := time.Duration(float64(f.media-from)/speed) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
	}
}

// pause advances the publisher's clock without sending (a reconnect gap).
func (f *feeder) pause(d time.Duration) {
	f.vt += d
	f.at += d
	f.media += d
}

func toNTP(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return secs<<32 | frac
}

// record publishes path on hub and starts recording it with m.
func record(t *testing.T, m *Manager, hub *relay.Hub, path string) (*relay.Publication, Info) {
	t.Helper()
	pub := publish(t, hub, path)
	in, err := m.Start(path)
	if err != nil {
		t.Fatal(err)
	}
	return pub, in
}

func publish(t *testing.T, hub *relay.Hub, path string) *relay.Publication {
	t.Helper()
	pub, err := hub.Publish(path, []relay.TrackInfo{h264Info, opusInfo}, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func newLocalManager(t *testing.T, spool, store string, mutate func(*Params)) (*Manager, *relay.Hub) {
	t.Helper()
	hub := newHub(t)
	st, err := storage.NewLocal(store)
	if err != nil {
		t.Fatal(err)
	}
	p := Params{Hub: hub, Storage: st, SpoolDir: spool, Logger: testLogger(),
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second}
	if mutate != nil {
		mutate(&p)
	}
	m, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, hub
}

// waitStatus waits until the recording reaches want.
func waitStatus(t *testing.T, m *Manager, id string, want Status, timeout time.Duration) Info {
	t.Helper()
	var in Info
	testenv.Poll(t, timeout, func() string {
		var err error
		if in, err = m.Get(id); err != nil {
			t.Fatal(err)
		}
		if in.Status == want {
			return ""
		}
		b, _ := json.MarshalIndent(in, "", " ")
		return fmt.Sprintf("recording %s did not become %s: %s", id, want, b)
	})
	return in
}

// needFFprobe returns ffprobe's path or skips (fails with LIVEGATE_E2E=1).
func needFFprobe(t *testing.T) string {
	t.Helper()
	return testenv.Need(t, "ffprobe")
}

type probed struct {
	duration float64
	video    []float64 // packet pts, seconds
	audio    []float64
}

// probe runs ffprobe on a playlist (or file) and returns the container
// duration and every packet's timestamp per stream.
func probe(t *testing.T, ffprobe, url string) probed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-allowed_extensions", "ALL",
		"-show_entries", "format=duration:packet=codec_type,pts_time,duration_time", "-of", "csv=p=0", url).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", url, err, out)
	}
	var p probed
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		switch {
		case len(f) >= 2 && (f[0] == "video" || f[0] == "audio"):
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				continue
			}
			if f[0] == "video" {
				p.video = append(p.video, v)
			} else {
				p.audio = append(p.audio, v)
			}
		case len(f) == 1 && f[0] != "":
			p.duration, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return p
}

// checkContinuous fails on a backward step or a hole longer than maxGap.
func checkContinuous(t *testing.T, kind string, ts []float64, maxGap float64) {
	t.Helper()
	if len(ts) == 0 {
		t.Fatalf("no %s packets", kind)
	}
	sorted := append([]float64(nil), ts...)
	sort.Float64s(sorted)
	for i := 1; i < len(sorted); i++ {
		if d := sorted[i] - sorted[i-1]; d > maxGap || d <= 0 {
			t.Fatalf("%s timestamps not continuous at %.3f s: step %.3f s", kind, sorted[i-1], d)
		}
	}
	for i := 1; i < len(ts); i++ {
		if ts[i] < ts[i-1] {
			t.Fatalf("%s timestamps go backwards at packet %d: %.3f after %.3f", kind, i, ts[i], ts[i-1])
		}
	}
}

// checkPlaylist probes a VOD playlist: duration within tol of want and
// continuous audio and video.
func checkPlaylist(t *testing.T, url string, want, tol float64) probed {
	t.Helper()
	ff := needFFprobe(t)
	p := probe(t, ff, url)
	t.Logf("ffprobe %s: duration %.3f s, %d video and %d audio packets", filepath.Base(url), p.duration, len(p.video), len(p.audio))
	if d := p.duration - want; d > tol || d < -tol {
		t.Errorf("playlist duration %.3f s, want %.1f ± %.1f s", p.duration, want, tol)
	}
	checkContinuous(t, "video", p.video, 0.1)
	checkContinuous(t, "audio", p.audio, 0.1)
	return p
}

func readFile(t *testing.T, m *Manager, id, name string) []byte {
	t.Helper()
	rc, _, _, err := m.Open(context.Background(), id, name)
	if err != nil {
		t.Fatalf("open %s/%s: %v", id, name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dumpDir(dir string) string {
	var b strings.Builder
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			fmt.Fprintf(&b, "%s %d\n", p, fi.Size())
		}
		return nil
	})
	return b.String()
}
