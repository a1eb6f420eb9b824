package hls

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/frames/framestest"
)

// stallingPlayer pauses a clip played with framestest.Clip.PlayHeld: while
// paused nothing is sent, and afterwards the RTP timestamps and the clock
// go on as a publisher's whose tab stalled. Video resumes mid-GOP: with a
// P-frame.
type stallingPlayer struct {
	mu     sync.Mutex
	paused chan struct{} // non-nil while paused; closed to resume
}

func (s *stallingPlayer) pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused == nil {
		s.paused = make(chan struct{})
	}
}

func (s *stallingPlayer) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused != nil {
		close(s.paused)
		s.paused = nil
	}
}

// held is the clip player's pause: the channel to wait on, if paused.
func (s *stallingPlayer) held() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// startStalling serves HLS of a publisher that can pause without ending
// its publication.
func startStalling(t *testing.T, p Params) (*fixture, *stallingPlayer) {
	t.Helper()
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	// The clip's own publisher hands over to the stalling one (as a
	// reconnect), before any muxer starts.
	f := startClip(t, p, c)
	f.stop()
	pub, err := framestest.Publish(f.hub, "room/cam")
	if err != nil {
		t.Fatal(err)
	}
	sp := &stallingPlayer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.PlayHeld(ctx, pub, sp.held)
	}()
	t.Cleanup(func() {
		sp.resume()
		cancel()
		<-done
		pub.End("test over")
	})
	f.pub = pub
	return f, sp
}

// datedSegment is what playlists said of a segment: its duration, its
// date (gohlslib dates the last two and the rewrite those after a
// discontinuity) and whether a discontinuity precedes it.
type datedSegment struct {
	dur  time.Duration
	at   time.Time
	disc bool
}

// readSegments adds the segments of a video playlist to segs, by number.
func readSegments(pl string, segs map[int]*datedSegment) {
	var cur datedSegment
	for _, l := range strings.Split(pl, "\n") {
		switch {
		case l == "#EXT-X-DISCONTINUITY":
			cur.disc = true
		case strings.HasPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"):
			cur.at, _ = time.Parse(time.RFC3339Nano, strings.TrimPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"))
		case strings.HasPrefix(l, "#EXTINF:"):
			d, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(l, "#EXTINF:"), ","), 64)
			cur.dur = time.Duration(d * float64(time.Second))
		case l != "" && !strings.HasPrefix(l, "#"):
			if m := segURI.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[2])
				s := segs[n]
				if s == nil {
					s = &datedSegment{}
					segs[n] = s
				}
				s.dur, s.disc = cur.dur, s.disc || cur.disc
				if !cur.at.IsZero() {
					s.at = cur.at
				}
			}
			cur = datedSegment{}
		}
	}
}

var (
	targetDur = regexp.MustCompile(`#EXT-X-TARGETDURATION:(\d+)`)
	extinf    = regexp.MustCompile(`#EXTINF:([0-9.]+),`)
)

// TestPublisherPauseKeepsTargetDuration: a publisher that pauses 6 s (its
// tab stalls, then it goes on mid-GOP; or it reconnects) leaves the
// playlist's EXT-X-TARGETDURATION as first announced, every segment within
// it, and a discontinuity where the gap was, dated by the clock; ffmpeg
// plays across.
func TestPublisherPauseKeepsTargetDuration(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	for _, how := range []string{"stall", "reconnect"} {
		t.Run(how, func(t *testing.T) {
			var f *fixture
			var pauseFor func(time.Duration)
			switch how {
			case "stall":
				var sp *stallingPlayer
				f, sp = startStalling(t, Params{})
				pauseFor = func(d time.Duration) {
					sp.pause()
					time.Sleep(d)
					sp.resume()
				}
			case "reconnect":
				c, err := framestest.Load("../../testdata")
				if err != nil {
					t.Fatal(err)
				}
				f = startClip(t, Params{}, c)
				pauseFor = func(d time.Duration) {
					f.stop()
					time.Sleep(d)
					_, stop, err := c.Start(f.hub, "room/cam")
					if err != nil {
						t.Error(err)
						return
					}
					t.Cleanup(stop)
				}
			}
			media := f.base + "/hls/room/cam/video1_stream.m3u8"
			if res, body := get(t, f.base+"/hls/room/cam/index.m3u8"); res.StatusCode != 200 {
				t.Fatalf("index.m3u8: %d %s", res.StatusCode, body)
			}
			_, first := get(t, media)
			declared := targetDur.FindStringSubmatch(first)[1]
			// Pause 3.3 s into the show: mid-GOP.
			time.Sleep(3300 * time.Millisecond)
			pausing := make(chan struct{})
			go func() {
				defer close(pausing)
				pauseFor(6 * time.Second)
			}()
			segs := map[int]*datedSegment{}
			targets := map[string]int{}
			var longest float64
			var last string
			for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
				res, pl := get(t, media)
				if res.StatusCode != 200 {
					t.Fatalf("playlist: %d %q", res.StatusCode, pl)
				}
				targets[targetDur.FindStringSubmatch(pl)[1]]++
				for _, m := range extinf.FindAllStringSubmatch(pl, -1) {
					d, _ := strconv.ParseFloat(m[1], 64)
					longest = max(longest, d)
				}
				last = pl
				readSegments(pl, segs)
			}
			<-pausing
			t.Logf("TARGETDURATION values %v (declared %s); longest segment %.3f s", targets, declared, longest)
			if len(targets) != 1 || targets[declared] == 0 {
				t.Errorf("EXT-X-TARGETDURATION changed: declared %s, then %v", declared, targets)
			}
			target, _ := strconv.ParseFloat(declared, 64)
			if longest >= target+0.5 {
				t.Errorf("a segment of %.3f s in a playlist whose target duration is %s", longest, declared)
			}
			// The segment after the gap starts a discontinuity, and its
			// date is the clock's: about 6 s more than the durations say.
			var jump time.Duration
			for n := range segs {
				a, b := segs[n], segs[n+1]
				if b == nil || a.at.IsZero() || b.at.IsZero() {
					continue
				}
				j := b.at.Sub(a.at) - a.dur
				if j > time.Second {
					jump = j
					if !b.disc {
						t.Errorf("the clock jumps %v before segment %d without EXT-X-DISCONTINUITY", j, n+1)
					}
				}
			}
			if jump < 4*time.Second {
				t.Errorf("no segment dated the gap later (largest jump %v):\n%s", jump, last)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-rw_timeout", "5000000",
				"-live_start_index", "0", "-i", f.base+"/hls/room/cam/index.m3u8", "-t", "6", "-f", "null", "-").CombinedOutput()
			if err != nil {
				t.Fatalf("ffmpeg across the gap: %v\n%s", err, out)
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Logf("ffmpeg said: %.1000s", s)
			}
		})
	}
}

// gohlslibWaiters counts goroutines blocked inside gohlslib's playlist
// handler.
func gohlslibWaiters() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "gohlslib/v2.(*muxerStream).handleMediaPlaylist")
}

// TestBlockedRequestsBounded: while the publisher stalls, blocking reloads
// past MaxBlocked are answered at once with ErrBusy; those that wait end
// when their client goes away, leaving nothing behind in gohlslib; and
// reloads that time out get the current playlist.
func TestBlockedRequestsBounded(t *testing.T) {
	f, sp := startStalling(t, Params{MaxBlocked: 4, BlockTimeout: 2 * time.Second})
	media := f.base + "/hls/room/cam/video1_stream.m3u8"
	if res, body := get(t, media); res.StatusCode != 200 {
		t.Fatalf("playlist: %d %s", res.StatusCode, body)
	}
	sp.pause()
	time.Sleep(500 * time.Millisecond)
	_, pl := get(t, media)
	next, nparts, _, _ := playlistEdge(pl)
	// The next segment's first part: it will not come while paused.
	blockURL := fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=0", media, next+1)

	// One blocked reload that times out gets the current playlist.
	began := time.Now()
	if res, body := get(t, blockURL); res.StatusCode != 200 || !strings.HasPrefix(body, "#EXTM3U") {
		t.Fatalf("timed-out reload: %d %q", res.StatusCode, body)
	}
	if d := time.Since(began); d < 1900*time.Millisecond || d > 4*time.Second {
		t.Errorf("timed-out reload answered after %v, want about BlockTimeout (2 s)", d)
	}
	if n := gohlslibWaiters(); n != 0 {
		t.Errorf("%d goroutines still wait in gohlslib's playlist handler after the reload was answered", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		code  int
		after time.Duration
		retry string
	}
	answers := make(chan answer, 10)
	for range 10 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, blockURL, nil)
			began := time.Now()
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{code: -1, after: time.Since(began)}
				return
			}
			res.Body.Close()
			answers <- answer{code: res.StatusCode, after: time.Since(began), retry: res.Header.Get("Retry-After")}
		}()
	}
	busy := 0
	for range 6 {
		select {
		case a := <-answers:
			if a.code != http.StatusServiceUnavailable || a.after > 500*time.Millisecond {
				t.Errorf("excess blocked reload: %d after %v, want 503 at once", a.code, a.after)
			}
			busy++
		case <-time.After(1500 * time.Millisecond):
			t.Fatalf("only %d of 10 blocking reloads answered within 1.5 s, want the 6 beyond MaxBlocked (4)", busy)
		}
	}
	f.srv.mu.Lock()
	m := f.srv.muxers["room/cam"]
	f.srv.mu.Unlock()
	if n := m.blocked.Load(); n != 4 {
		t.Errorf("%d requests waiting, want 4", n)
	}
	// The players go away: nothing of theirs stays.
	cancel()
	for range 4 {
		if a := <-answers; a.code != -1 {
			t.Errorf("a waiting reload got %d before its client went away", a.code)
		}
	}
	deadline := time.Now().Add(time.Second)
	for m.blocked.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := m.blocked.Load(); n != 0 {
		t.Errorf("%d requests still counted as waiting after their clients left", n)
	}
	if n := gohlslibWaiters(); n != 0 {
		t.Errorf("%d goroutines still wait in gohlslib's playlist handler", n)
	}

	// When the publisher goes on, a reload waiting for the next part gets
	// it.
	go func() {
		time.Sleep(500 * time.Millisecond)
		sp.resume()
	}()
	began = time.Now()
	res, body := get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", media, next, nparts))
	n2, p2, _, _ := playlistEdge(body)
	if res.StatusCode != 200 || (n2 == next && p2 <= nparts) {
		t.Errorf("reload after the publisher resumed: %d, edge %d/%d, want past %d/%d\n%s", res.StatusCode, n2, p2, next, nparts, body)
	}
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Errorf("the reload waiting for the next part was answered %v after the publisher resumed 0.5 s in", d)
	}
}
