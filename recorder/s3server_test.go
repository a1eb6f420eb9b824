package recorder

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/recorder/storage"
)

// s3Server is a real S3-compatible server on loopback: versitygw (posix
// backend) or MinIO, found through $LIVEGATE_S3_SERVER_BIN or as
// "versitygw" / "minio" on $PATH. .ci/run installs versitygw with
//
//	GOBIN=/usr/local/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
type s3Server struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

const (
	s3AccessKey = "livegatetestkey"
	s3SecretKey = "livegatetestsecret123"
)

func findS3Server(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("LIVEGATE_S3_SERVER_BIN"); b != "" {
		return b
	}
	for _, name := range []string{"versitygw", "minio"} {
		if p, err := testenv.Find(name); err == nil {
			return p
		}
	}
	msg := "no S3-compatible server: set LIVEGATE_S3_SERVER_BIN or put versitygw (GOBIN=/usr/local/bin go install " +
		"github.com/versity/versitygw/cmd/versitygw@v1.8.0) or minio on PATH"
	testenv.SkipOrFail(t, "%s", msg)
	return ""
}

// startS3Server starts the server on a free loopback port with an empty
// data directory; it is stopped when the test ends.
func startS3Server(t *testing.T) *s3Server {
	t.Helper()
	bin := findS3Server(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &s3Server{t: t, bin: bin, dir: t.TempDir(), addr: addr}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *s3Server) endpoint() string { return "http://" + s.addr }

func (s *s3Server) start() {
	s.t.Helper()
	var cmd *exec.Cmd
	if strings.Contains(filepath.Base(s.bin), "minio") {
		cmd = exec.Command(s.bin, "server", "--quiet", "--address", s.addr, s.dir)
		cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s3AccessKey, "MINIO_ROOT_PASSWORD="+s3SecretKey)
	} else {
		cmd = exec.Command(s.bin, "--port", s.addr, "posix", s.dir)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s3AccessKey, "ROOT_SECRET_ACCESS_KEY="+s3SecretKey)
	}
	log, err := os.Create(filepath.Join(s.t.TempDir(), "s3.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(s.done)
	}()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// Any HTTP answer (403 for anonymous requests) means it is serving.
		if resp, err := client.Get(s.endpoint() + "/"); err == nil {
			resp.Body.Close()
			return
		}
	}
	b, _ := os.ReadFile(log.Name())
	s.stop()
	s.t.Fatalf("%s did not answer on %s within 20 s:\n%s", s.bin, s.addr, b)
}

// stop ends the server (SIGTERM, then SIGKILL after 5 s).
func (s *s3Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *s3Server) storage(t *testing.T, bucket string) *storage.S3 {
	t.Helper()
	st, err := storage.NewS3(context.Background(), storage.S3Config{
		Endpoint: s.endpoint(), Bucket: bucket, Prefix: "rec/", PathStyle: true,
		AccessKeyID: s3AccessKey, SecretAccessKey: s3SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// download copies every object below prefix into dir.
func download(t *testing.T, st s3Storage, prefix, dir string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := st.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		rc, _, err := st.Open(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, filepath.Base(k)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		f.Close()
		names = append(names, filepath.Base(k))
	}
	return names
}

// checkAllUploaded fails unless storage holds every file of the manifest.
func checkAllUploaded(t *testing.T, m *Manager, id string, names []string) {
	t.Helper()
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	m.mu.Lock()
	man := *m.recs[id].man
	m.mu.Unlock()
	var missing []string
	for _, f := range append(append([]FileInfo{}, man.Inits...), man.Segments...) {
		if !have[f.Name] {
			missing = append(missing, f.Name)
		}
	}
	for _, n := range []string{"index.m3u8", manifestName} {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("storage lacks %v (has %v)", missing, names)
	}
	t.Logf("storage has all %d segments, %d init(s), playlist and manifest", len(man.Segments), len(man.Inits))
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

type s3Storage = *storage.S3

func mkdir(t *testing.T, d string) {
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitUploaded waits until n files of the recording are in storage.
func waitUploaded(t *testing.T, m *Manager, id string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		up := 0
		for _, f := range m.recs[id].man.Segments {
			if f.Uploaded {
				up++
			}
		}
		m.mu.Unlock()
		if up >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d segments not uploaded within %s", n, timeout)
}
