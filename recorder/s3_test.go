package recorder

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newS3Manager(t *testing.T, srv *s3Server, spool string) (*Manager, func() *Manager) {
	t.Helper()
	st := srv.storage(t, "livegate")
	mk := func() *Manager {
		m, err := New(Params{Hub: newHub(t), Storage: st, SpoolDir: spool, Logger: testLogger(),
			RetryMin: 100 * time.Millisecond, RetryMax: time.Second, UploadTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	return mk(), mk
}

// Records 20 s to a real S3-compatible server and stops the server for
// $LIVEGATE_S3_OUTAGE (default 6 s; the check uses 30s) in the
// middle: no segment may be missing, and the archive in the bucket must
// play for 20 s.
func TestS3UploadSurvivesOutage(t *testing.T) {
	srv := startS3Server(t)
	outage := envDuration(t, "LIVEGATE_S3_OUTAGE", 6*time.Second)
	dir := testDir(t)
	m, _ := newS3Manager(t, srv, filepath.Join(dir, "spool"))
	hub := m.p.Hub
	pub, in := record(t, m, hub, "room/s3")
	st := m.p.Storage
	f := newFeeder(t)

	f.feed(pub, 6*time.Second, 3) // 2 s: the first segment is uploaded
	waitUploaded(t, m, in.ID, 1, 10*time.Second)
	srv.stop()
	t.Logf("S3 server stopped for %s", outage)
	outageEnd := time.Now().Add(outage)
	f.feed(pub, 14*time.Second, 14/outage.Seconds()*0.8) // the rest, during the outage
	time.Sleep(100 * time.Millisecond)
	if _, err := m.Stop(in.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := m.Get(in.ID)
	if got.Status != StatusUploading || got.Pending == 0 || !strings.Contains(got.Error, "upload") {
		t.Errorf("during the outage: status %s, %d pending, error %q; want uploading, pending, an upload error",
			got.Status, got.Pending, got.Error)
	}
	time.Sleep(time.Until(outageEnd))
	srv.start()
	t.Log("S3 server restarted")
	in = waitStatus(t, m, in.ID, StatusComplete, 30*time.Second)
	if in.Error != "" {
		t.Errorf("error after recovery: %s", in.Error)
	}
	dl := filepath.Join(dir, "download")
	mkdir(t, dl)
	names := download(t, st.(s3Storage), "room/s3/"+in.ID+"/", dl)
	checkAllUploaded(t, m, in.ID, names)
	checkPlaylist(t, filepath.Join(dl, "index.m3u8"), 20, 1)
	// Playback through the manager reads uploaded files from the bucket.
	if b := readFile(t, m, in.ID, "seg_000002.m4s"); len(b) == 0 {
		t.Error("empty segment from storage")
	}
}

// A crash (no clean stop) while the bucket is down: a new Manager on the
// same spool uploads everything up to the last completed segment, and the
// archive plays.
func TestS3CrashRecovery(t *testing.T) {
	srv := startS3Server(t)
	dir := testDir(t)
	spool := filepath.Join(dir, "spool")
	m1, mk := newS3Manager(t, srv, spool)
	pub := publish(t, m1.p.Hub, "room/crash")
	in, err := m1.Start("room/crash")
	if err != nil {
		t.Fatal(err)
	}
	f := newFeeder(t)
	f.feed(pub, 5*time.Second, 5)
	waitUploaded(t, m1, in.ID, 1, 10*time.Second)
	srv.stop()
	f.feed(pub, 9*time.Second, 5) // 14 s fed: segments up to 12 s are complete
	time.Sleep(100 * time.Millisecond)
	m1.abandon() // as if SIGKILLed: no last segment, no final playlist
	srv.start()

	m2 := mk()
	in = waitStatus(t, m2, in.ID, StatusComplete, 30*time.Second)
	if !in.Interrupted || in.Segments != 3 {
		t.Errorf("recovered recording: interrupted %v, %d segments; want true, 3", in.Interrupted, in.Segments)
	}
	dl := filepath.Join(dir, "download")
	mkdir(t, dl)
	names := download(t, m2.p.Storage.(s3Storage), "room/crash/"+in.ID+"/", dl)
	checkAllUploaded(t, m2, in.ID, names)
	checkPlaylist(t, filepath.Join(dl, "index.m3u8"), 12, 1)
}
