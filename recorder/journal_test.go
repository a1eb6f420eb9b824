package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/recorder/storage"
)

// Found: the whole manifest was rewritten (and fsynced) for every segment
// and every upload, so a long recording wrote bytes quadratic in its
// length. Now changes are journal lines, folded in at doubling intervals.
func TestManifestWritesStayLinear(t *testing.T) {
	dir := filepath.Join(testDir(t), "20260101T000000Z-cccccc")
	mkdir(t, dir)
	man := &Manifest{ID: filepath.Base(dir), Stream: "room/long", Key: "room/long/x/", Start: time.Now()}
	if err := man.save(dir); err != nil {
		t.Fatal(err)
	}
	r := &rec{dir: dir, man: man}
	const n = 2000 // 2.2 hours of 4 s segments
	var written, snapshots int
	do := func(op *journalOp) {
		w := r.change(op)
		if w.snapshot != nil {
			snapshots++
			written += len(w.snapshot)
		}
		written += len(w.line)
		if err := w.write(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		name := fmt.Sprintf("seg_%06d.m4s", i)
		do(&journalOp{Op: "seg", File: &FileInfo{Name: name, Size: 1 << 20, Init: "init_1.mp4", Start: float64(i) * 4, Duration: 4}})
		do(&journalOp{Op: "up", Name: name})
	}
	final, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d segments: %d snapshots, %d bytes written, final manifest %d bytes", n, snapshots, written, len(final))
	if written > 6*len(final) || snapshots > 20 {
		t.Fatalf("%d bytes in %d snapshots for a %d-byte manifest: not linear", written, snapshots, len(final))
	}
	// What a restart reads back is what was recorded, torn last line and all.
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"op":"seg","file":{"name":"torn`)
	f.Close()
	back, _, err := loadManifestJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(back)
	want, _ := json.Marshal(r.man)
	if !bytes.Equal(got, want) {
		t.Fatalf("reloaded manifest differs: %d segments, want %d", len(back.Segments), len(r.man.Segments))
	}
}

// Found: a spooled segment was deleted after its upload even when the
// manifest could not record the upload, so a restart found it "lost".
func TestSpoolCopyKeptWhenManifestFails(t *testing.T) {
	dir := testDir(t)
	spool, store := filepath.Join(dir, "spool"), filepath.Join(dir, "recordings")
	const id = "20260101T000000Z-dddddd"
	spoolRecording(t, spool, id, 2)
	m, _ := newLocalManager(t, spool, store, func(p *Params) {
		// From the first upload on, the journal cannot be written: a
		// directory stands in its place.
		p.Storage = &hookStorage{Storage: p.Storage, before: func() { _ = os.MkdirAll(filepath.Join(spool, id, journalName), 0o755) }}
	})
	testenv.Poll(t, 5*time.Second, func() string {
		if _, err := os.Stat(filepath.Join(store, "room/up", id, "seg_000002.m4s")); err == nil {
			return ""
		}
		return "segments not uploaded:\n" + dumpDir(dir)
	})
	m.Close()
	for _, f := range []string{"init_1.mp4", "seg_000001.m4s", "seg_000002.m4s"} {
		if _, err := os.Stat(filepath.Join(spool, id, f)); err != nil {
			t.Errorf("%s: spool copy removed although the manifest does not say it was uploaded: %v", f, err)
		}
	}
}

// hookStorage runs before ahead of every upload.
type hookStorage struct {
	storage.Storage
	before func()
}

func (h *hookStorage) PutFile(ctx context.Context, key, path string) error {
	h.before()
	return h.Storage.PutFile(ctx, key, path)
}

// Found: no spool size limit, so a long storage outage filled the disk.
// Beyond record-spool-max new segments are dropped and counted; when
// storage returns, the spool drains and the count goes back to zero.
func TestSpoolLimit(t *testing.T) {
	dir := testDir(t)
	spool := filepath.Join(dir, "spool")
	const limit = 2 << 20
	var down atomic.Bool
	down.Store(true)
	m, hub := newLocalManager(t, spool, filepath.Join(dir, "recordings"), func(p *Params) {
		p.SpoolMaxBytes = limit
		p.RetryMin, p.RetryMax = 50*time.Millisecond, 100*time.Millisecond
		p.Storage = &switchStorage{Storage: p.Storage, down: &down}
	})
	pub, in := record(t, m, hub, "room/spool")
	newFeeder(t).feed(pub, 40*time.Second, 16)
	time.Sleep(100 * time.Millisecond)
	if m.SpoolBytes() > limit || m.SpoolErrors() == 0 {
		t.Fatalf("spool %d bytes (limit %d), %d refused writes", m.SpoolBytes(), limit, m.SpoolErrors())
	}
	if _, err := m.Stop(in.ID); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	in = waitStatus(t, m, in.ID, StatusComplete, 10*time.Second)
	if m.SpoolBytes() != 0 {
		t.Fatalf("spool holds %d bytes after everything was uploaded", m.SpoolBytes())
	}
	t.Logf("%d segments kept, %d refused at the %d KB limit", in.Segments, m.SpoolErrors(), limit>>10)
}

type switchStorage struct {
	storage.Storage
	down *atomic.Bool
}

func (s *switchStorage) PutFile(ctx context.Context, key, path string) error {
	if s.down.Load() {
		return errors.New("bucket down")
	}
	return s.Storage.PutFile(ctx, key, path)
}

// hangStorage never answers uploads of keys under prefix: a refusing or
// black-holed bucket path.
type hangStorage struct {
	storage.Storage
	prefix   string
	attempts atomic.Int32 // uploads tried under prefix
}

func (h *hangStorage) PutFile(ctx context.Context, key, path string) error {
	if strings.HasPrefix(key, h.prefix) {
		h.attempts.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(20 * time.Millisecond) // a real upload takes a moment
	return h.Storage.PutFile(ctx, key, path)
}

// Found: a recording whose uploads fail for good held the upload workers:
// it was always taken first when its backoff ended (the oldest), so other
// recordings got one file through per failure.
func TestFailingRecordingDoesNotHoldWorkers(t *testing.T) {
	dir := testDir(t)
	spool, store := filepath.Join(dir, "spool"), filepath.Join(dir, "recordings")
	const bad, good = "20260101T000000Z-aaaaaa", "20260101T000001Z-bbbbbb"
	spoolRecording(t, spool, bad, 3)
	spoolRecording(t, spool, good, 50)
	var hs *hangStorage
	m, _ := newLocalManager(t, spool, store, func(p *Params) {
		hs = &hangStorage{Storage: p.Storage, prefix: "room/up/" + bad + "/"}
		p.Storage = hs
		p.UploadWorkers = 1
		p.UploadTimeout = 300 * time.Millisecond
		p.RetryMin, p.RetryMax = 50*time.Millisecond, 100*time.Millisecond
	})
	start := time.Now()
	waitStatus(t, m, good, StatusComplete, 20*time.Second)
	n := hs.attempts.Load()
	t.Logf("healthy recording (51 files of 20 ms) complete after %v; the hanging one was tried %d times meanwhile", time.Since(start).Round(time.Millisecond), n)
	if n > 3 {
		t.Fatalf("the failing recording took the only worker %d times while another had files ready", n)
	}
}
