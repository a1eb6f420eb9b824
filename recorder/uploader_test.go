package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/recorder/storage"
)

// flakyStorage fails every upload until healthy, and records each
// attempt per key: when it started and how many were running at once.
type flakyStorage struct {
	storage.Storage
	mu       sync.Mutex
	healthy  bool
	attempts map[string][]time.Time
	running  map[string]int
	overlap  []string
}

func (s *flakyStorage) PutFile(ctx context.Context, key, path string) error {
	s.mu.Lock()
	s.attempts[key] = append(s.attempts[key], time.Now())
	s.running[key]++
	if s.running[key] > 1 {
		s.overlap = append(s.overlap, key)
	}
	ok := s.healthy
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running[key]--
		s.mu.Unlock()
	}()
	time.Sleep(5 * time.Millisecond) // an upload takes a moment
	if !ok {
		return errors.New("bucket down")
	}
	return s.Storage.PutFile(ctx, key, path)
}

// spoolRecording leaves a finished recording with n segments in the spool,
// as a crash or a bucket outage would.
func spoolRecording(t *testing.T, spool, id string, n int) {
	t.Helper()
	dir := filepath.Join(spool, id)
	mkdir(t, dir)
	man := &Manifest{ID: id, Stream: "room/up", Key: "room/up/" + id + "/", Start: time.Now(), End: time.Now(), Finished: true}
	files := []string{"init_1.mp4"}
	man.Inits = []FileInfo{{Name: "init_1.mp4", Size: 4}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("seg_%06d.m4s", i)
		files = append(files, name)
		man.Segments = append(man.Segments, FileInfo{Name: name, Size: 4, Init: "init_1.mp4",
			Start: float64(i-1) * 4, Duration: 4})
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := man.save(dir); err != nil {
		t.Fatal(err)
	}
}

// Two upload workers while the bucket is down: a failing file is never
// uploaded by both at once, and its retries keep to the backoff whichever
// worker makes them, also when new segments wake the workers (before, an
// idle worker woken by a new segment retried at once while the other one
// slept in its backoff). Once the bucket is back, everything is uploaded.
func TestUploadWorkersShareBackoff(t *testing.T) {
	dir := testDir(t)
	spool, store := filepath.Join(dir, "spool"), filepath.Join(dir, "recordings")
	spoolRecording(t, spool, "20260101T000000Z-aaaaaa", 3)
	spoolRecording(t, spool, "20260101T000001Z-bbbbbb", 3)
	var fs *flakyStorage
	const retryMin = 200 * time.Millisecond
	m, _ := newLocalManager(t, spool, store, func(p *Params) {
		fs = &flakyStorage{Storage: p.Storage, attempts: map[string][]time.Time{}, running: map[string]int{}}
		p.Storage = fs
		p.UploadWorkers = 2
		p.RetryMin, p.RetryMax = retryMin, 400*time.Millisecond
	})
	// A live recording spools a segment every few seconds, and each one
	// wakes the workers: here many, to give an idle worker every chance to
	// retry a file the other one just failed.
	for range 75 {
		m.kick()
		time.Sleep(20 * time.Millisecond)
	}
	fs.mu.Lock()
	fs.healthy = true
	for key, at := range fs.attempts {
		if len(at) < 2 {
			t.Errorf("%s: %d attempts in 1.5 s, want retries", key, len(at))
		}
		for i := 1; i < len(at); i++ {
			// Jittered backoff: at least half of RetryMin between attempts.
			if gap := at[i].Sub(at[i-1]); gap < retryMin/2 {
				t.Errorf("%s: attempt %d came %v after the previous one, want >= %v", key, i+1, gap, retryMin/2)
			}
		}
	}
	if len(fs.attempts) != 2 {
		t.Errorf("uploads tried for %d files during the outage, want the first of each recording (2): %v", len(fs.attempts), fs.attempts)
	}
	if len(fs.overlap) > 0 {
		t.Errorf("the same file was uploaded by two workers at once: %v", fs.overlap)
	}
	fs.mu.Unlock()
	for _, id := range []string{"20260101T000000Z-aaaaaa", "20260101T000001Z-bbbbbb"} {
		waitStatus(t, m, id, StatusComplete, 10*time.Second)
	}
}
