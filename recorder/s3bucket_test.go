package recorder

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/recorder/storage"
)

func newS3(t *testing.T, endpoint, bucket, secret string) *storage.S3 {
	t.Helper()
	st, err := storage.NewS3(context.Background(), storage.S3Config{
		Endpoint: endpoint, Bucket: bucket, PathStyle: true, AccessKeyID: s3AccessKey, SecretAccessKey: secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// At start the recorder creates a missing bucket; with credentials the
// server refuses, start fails and says so; a server that does not answer
// does not stop the start (recordings spool until it does).
func TestS3BucketAtStart(t *testing.T) {
	srv := startS3Server(t)
	dir := testDir(t)
	start := func(st storage.Storage) (*Manager, error) {
		m, err := New(Params{Hub: newHub(t), Storage: st, SpoolDir: filepath.Join(dir, "spool"), Logger: testLogger(),
			PrepareTimeout: 3 * time.Second})
		if err == nil {
			t.Cleanup(m.Close)
		}
		return m, err
	}

	if _, err := start(newS3(t, srv.endpoint(), "made-at-start", s3SecretKey)); err != nil {
		t.Fatalf("start with a missing bucket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := newS3(t, srv.endpoint(), "made-at-start", s3SecretKey).List(ctx, ""); err != nil {
		t.Errorf("the bucket was not created at start: listing it: %v", err)
	}

	_, err := start(newS3(t, srv.endpoint(), "other-bucket", "not-the-secret"))
	if err == nil {
		t.Fatal("start with refused credentials succeeded")
	}
	if !strings.Contains(err.Error(), "other-bucket") || errors.Is(err, storage.ErrUnreachable) {
		t.Errorf("start error does not name the bucket or calls it unreachable: %v", err)
	}
	t.Logf("refused: %v", err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	if _, err := start(newS3(t, closed, "later", s3SecretKey)); err != nil {
		t.Errorf("start with an unreachable S3 server failed: %v", err)
	}
}
