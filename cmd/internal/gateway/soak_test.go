package gateway

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
)

// TestSoak churns viewers against one stream and checks that goroutines and
// heap return to their baseline afterwards: no leak per session. It runs
// only when asked, for example the ten minutes with 200 viewers:
//
//	LIVEGATE_SOAK=10m LIVEGATE_SOAK_VIEWERS=200 go test -run TestSoak -timeout 20m -v ./cmd/internal/gateway/
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("LIVEGATE_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("soak test: set LIVEGATE_SOAK to a duration (e.g. 10m) to run it")
	}
	viewers := 50
	if n, err := strconv.Atoi(os.Getenv("LIVEGATE_SOAK_VIEWERS")); err == nil && n > 0 {
		viewers = n
	}
	g := startGateway(t, nil)
	c := loadClip(t)
	pub := g.publish(t, "soak/cam")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go play(ctx, pub, c, 0)
	time.Sleep(time.Second)

	settle := func() (int, uint64) {
		var ms runtime.MemStats
		for range 5 {
			runtime.GC()
			time.Sleep(200 * time.Millisecond)
		}
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	// One viewer session first, so lazily started pools count in the baseline.
	v := g.view(t, "soak/cam")
	time.Sleep(time.Second)
	v.close()
	baseG, baseHeap := settle()
	t.Logf("baseline: %d goroutines, heap %d MiB", baseG, baseHeap>>20)

	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sessions, failures := 0, 0
	for range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				s, err := lightViewer(t, g, "soak/cam")
				mu.Lock()
				sessions++
				if err != nil {
					failures++
				}
				mu.Unlock()
				if err == nil {
					time.Sleep(time.Duration(500+rand.IntN(3000)) * time.Millisecond)
					cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
					_ = s.Close(cctx)
					ccancel()
				} else {
					time.Sleep(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	st, _ := g.Hub().Get("soak/cam")
	waitFor(t, 20*time.Second, "all viewers gone", func() bool { return st.Viewers() == 0 })
	time.Sleep(2 * time.Second) // pion closes its last timers
	endG, endHeap := settle()
	if f := os.Getenv("LIVEGATE_SOAK_HEAPPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			_ = pprof.WriteHeapProfile(out)
			_ = out.Close()
		}
	}
	t.Logf("after %d sessions (%d failed) over %v: %d goroutines, heap %d MiB", sessions, failures, d, endG, endHeap>>20)
	if failures > sessions/100 {
		t.Errorf("%d of %d sessions failed", failures, sessions)
	}
	if endG > baseG+10 {
		t.Errorf("goroutines grew from %d to %d", baseG, endG)
	}
	if endHeap > baseHeap+32<<20 {
		t.Errorf("heap grew from %d to %d MiB", baseHeap>>20, endHeap>>20)
	}
}

// lightViewer is a WHEP session that reads and discards media: the soak
// test must not hold on to what its viewers received.
func lightViewer(t *testing.T, g *testGateway, path string) (*rtcclient.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rtcclient.Connect(ctx, g.base+"/whep/"+path, clientOpts(t), func(pc *webrtc.PeerConnection) error {
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			go func() {
				buf := make([]byte, 1500)
				for {
					if _, _, err := tr.Read(buf); err != nil {
						return
					}
				}
			}()
		})
		return recvonlySetup(pc)
	})
}
