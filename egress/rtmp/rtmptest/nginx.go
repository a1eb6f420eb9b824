// Package rtmptest runs a real nginx with libnginx-mod-rtmp on 127.0.0.1
// for tests: the stand-in for a CDN's RTMP ingest. Without nginx or the
// module a test is skipped, or fails when LIVEGATE_E2E=1.
package rtmptest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

const rtmpModule = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

// nginxRTMP is a real nginx with libnginx-mod-rtmp on 127.0.0.1: the
// stand-in for a CDN's ingest.
// Nginx is a running (or stopped) nginx-rtmp with application "live".
type Nginx struct {
	t      testing.TB
	bin    string
	prefix string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartNginx starts nginx-rtmp on a free loopback port; it stops with the test.
func StartNginx(t testing.TB) *Nginx {
	port := 0
	t.Helper()
	bin := testenv.Need(t, "nginx")
	if _, err := os.Stat(rtmpModule); err != nil {
		testenv.SkipOrFail(t, "nginx RTMP module missing at %s (apt-get install libnginx-mod-rtmp)", rtmpModule)
	}
	if port == 0 {
		port = testenv.FreePort(t)
	}
	prefix := t.TempDir()
	_ = os.MkdirAll(filepath.Join(prefix, "logs"), 0o777)
	conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid nginx.pid;
events { worker_connections 64; }
rtmp {
    access_log off;
    server {
        listen 127.0.0.1:%d;
        chunk_size 4096;
        application live {
            live on;
            record off;
            allow publish 127.0.0.1;
            deny publish all;
            allow play all;
        }
    }
}
`, rtmpModule, port)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &Nginx{t: t, bin: bin, prefix: prefix, port: port}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// Start (re)starts a stopped nginx on the same port.
func (n *Nginx) Start() {
	n.t.Helper()
	args := []string{"-p", n.prefix, "-c", "nginx.conf", "-e", "stderr"}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		// As root, run it as nobody (like recipes/run_nginx_rtmp.sh).
		_ = filepath.Walk(n.prefix, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, 65534, 65534) })
		_ = os.Chmod(filepath.Dir(n.prefix), 0o755)
		cmd = exec.Command(n.bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	} else {
		cmd = exec.Command(n.bin, args...)
	}
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, out
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("nginx: %v", err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", n.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-n.exited:
			n.t.Fatalf("nginx exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			n.Stop()
			n.t.Fatalf("nginx did not listen within 5 s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop terminates nginx (SIGTERM, then SIGKILL after 5 s).
func (n *Nginx) Stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
}

// Addr is nginx's RTMP address.
func (n *Nginx) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }
