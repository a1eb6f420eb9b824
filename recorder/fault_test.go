package recorder

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

// The child half of TestCrashSIGKILL: records until it is killed.
func TestMain_childRecorder(t *testing.T) {
	spool := os.Getenv("LIVEGATE_RECORDER_CHILD")
	if spool == "" {
		t.Skip("helper process for TestCrashSIGKILL")
	}
	m, hub := newLocalManager(t, spool, filepath.Join(filepath.Dir(spool), "recordings"), nil)
	pub, _ := record(t, m, hub, "room/kill")
	newFeeder(t).feed(pub, time.Hour, 4) // until SIGKILL
}

// A real SIGKILL of a recording process: a new Manager on the same spool
// keeps everything up to the last completed segment, and it plays.
func TestCrashSIGKILL(t *testing.T) {
	dir := testDir(t)
	spool := filepath.Join(dir, "spool")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMain_childRecorder$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LIVEGATE_RECORDER_CHILD="+spool)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() { _ = cmd.Process.Kill(); <-done }()

	// Wait for three spooled segments (12 s of media, 3 s at 4x).
	testenv.Poll(t, 30*time.Second, func() string {
		if spooledSegments(spool) >= 3 {
			return ""
		}
		return "child recorded no 3 segments:\n" + dumpDir(dir)
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	n := spooledSegments(spool)
	t.Logf("SIGKILLed the recorder with %d completed segments", n)

	store := filepath.Join(dir, "recordings")
	m, _ := newLocalManager(t, spool, store, nil)
	list := m.List(Filter{Stream: "room/kill"})
	if len(list) != 1 {
		t.Fatalf("%d recordings after restart, want 1", len(list))
	}
	in := waitStatus(t, m, list[0].ID, StatusComplete, 10*time.Second)
	if !in.Interrupted || in.Segments != n {
		t.Errorf("after restart: interrupted %v, %d segments; want true, %d", in.Interrupted, in.Segments, n)
	}
	checkPlaylist(t, filepath.Join(store, "room/kill", in.ID, "index.m3u8"), in.Duration, 0.5)
}

func spooledSegments(spool string) int {
	dirs, _ := os.ReadDir(spool)
	for _, d := range dirs {
		if man, err := loadManifest(filepath.Join(spool, d.Name())); err == nil {
			return len(man.Segments)
		}
	}
	return 0
}

// A full disk loses the segments that could not be written, is reported
// in the API, and recording carries on; the playlist marks the hole.
func TestDiskFull(t *testing.T) {
	dir := testDir(t)
	var writes atomic.Int32
	m, hub := newLocalManager(t, filepath.Join(dir, "spool"), filepath.Join(dir, "recordings"), func(p *Params) {
		p.writeFile = func(path string, data []byte) error {
			// The 2nd and 3rd media segments hit a full disk.
			if strings.HasSuffix(path, ".m4s") {
				if n := writes.Add(1); n == 2 || n == 3 {
					return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
				}
			}
			return writeFileAtomic(path, data)
		}
	})
	pub, in := record(t, m, hub, "room/full")
	f := newFeeder(t)
	f.feed(pub, 13*time.Second, 8)
	time.Sleep(100 * time.Millisecond)
	got, _ := m.Get(in.ID)
	if got.Status != StatusRecording || !strings.Contains(got.Error, "no space left") {
		t.Errorf("status %s, error %q; want recording and the disk-full error", got.Status, got.Error)
	}
	f.feed(pub, 7*time.Second, 8)
	time.Sleep(100 * time.Millisecond)
	if _, err := m.Stop(in.ID); err != nil {
		t.Fatal(err)
	}
	in = waitStatus(t, m, in.ID, StatusComplete, 10*time.Second)
	if in.Segments != 3 || m.spoolErrors.Load() != 2 {
		t.Errorf("%d segments, %d spool errors; want 3 and 2", in.Segments, m.spoolErrors.Load())
	}
	pl := string(readFile(t, m, in.ID, "index.m3u8"))
	if !strings.Contains(pl, "#EXT-X-DISCONTINUITY") {
		t.Errorf("no discontinuity where segments are missing:\n%s", pl)
	}
}

// A publisher that reconnects within the grace period continues the same
// recording with continuous timestamps.
func TestReconnectContinuesRecording(t *testing.T) {
	dir := testDir(t)
	store := filepath.Join(dir, "recordings")
	m, hub := newLocalManager(t, filepath.Join(dir, "spool"), store, nil)
	pub, in := record(t, m, hub, "room/re")
	f := newFeeder(t)
	f.feed(pub, 6*time.Second, 8)
	pub.End("test: publisher gone")
	time.Sleep(500 * time.Millisecond)
	f.pause(500 * time.Millisecond)
	pub = publish(t, hub, "room/re") // back within the grace period
	f.feed(pub, 6*time.Second, 8)
	time.Sleep(100 * time.Millisecond)
	if l := m.List(Filter{Stream: "room/re"}); len(l) != 1 {
		t.Fatalf("%d recordings, want the same one continued", len(l))
	}
	if _, err := m.Stop(in.ID); err != nil {
		t.Fatal(err)
	}
	in = waitStatus(t, m, in.ID, StatusComplete, 10*time.Second)
	// 12 s of media plus the time the publisher was away (about 0.5 s of
	// wall clock, which the relay keeps in the timestamps).
	p := probe(t, needFFprobe(t), filepath.Join(store, "room/re", in.ID, "index.m3u8"))
	if p.duration < 12 || p.duration > 13.5 {
		t.Errorf("duration %.3f s, want 12-13.5 s", p.duration)
	}
	checkContinuous(t, "video", p.video, 1.5)
	checkContinuous(t, "audio", p.audio, 1.5)
}

// Rules record matching streams when they go live; Delete and retention
// remove recordings from storage and the spool.
func TestRulesDeleteRetention(t *testing.T) {
	dir := testDir(t)
	store := filepath.Join(dir, "recordings")
	m, hub := newLocalManager(t, filepath.Join(dir, "spool"), store, func(p *Params) {
		p.Rules = []string{"auto/*"}
	})
	pubA := publish(t, hub, "auto/one")
	pubB := publish(t, hub, "other/one")
	f := newFeeder(t)
	deadline := time.Now().Add(5 * time.Second)
	for len(m.List(Filter{})) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	f.feed(pubA, 5*time.Second, 8)
	pubB.End("done")
	list := m.List(Filter{})
	if len(list) != 1 || list[0].Stream != "auto/one" {
		t.Fatalf("recordings %+v, want one of auto/one", list)
	}
	id := list[0].ID
	if _, err := m.Start("auto/one"); !errors.Is(err, ErrAlreadyRecording) {
		t.Errorf("second Start: %v, want ErrAlreadyRecording", err)
	}
	m.Stop(id)
	waitStatus(t, m, id, StatusComplete, 10*time.Second)
	if l := m.List(Filter{From: time.Now().Add(time.Hour)}); len(l) != 0 {
		t.Errorf("from filter: %d recordings, want 0", len(l))
	}

	m.p.Retention = time.Hour
	m.applyRetention(time.Now()) // too young
	if _, err := m.Get(id); err != nil {
		t.Fatalf("retention deleted a young recording: %v", err)
	}
	m.applyRetention(time.Now().Add(2 * time.Hour))
	if _, err := m.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("after retention: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(store, "auto/one", id)); !os.IsNotExist(err) {
		t.Errorf("storage still has the recording: %v", err)
	}
	if err := m.Delete(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of a deleted recording: %v", err)
	}
}
