package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startNginxProxy runs a real nginx on loopback in front of upstream with
// the given location body; it stops with the test.
func startNginxProxy(t *testing.T, upstream, location string) string {
	t.Helper()
	bin := needProgram(t, "nginx")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	prefix := t.TempDir()
	_ = os.MkdirAll(filepath.Join(prefix, "logs"), 0o777)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d;
        location / {
            proxy_pass http://%[3]s;
            %[4]s
        }
    }
}
`, prefix, port, upstream, location)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", "nginx.conf", "-e", "stderr")
	if os.Geteuid() == 0 {
		// As root, run it as nobody (like recipes/run_nginx_rtmp.sh).
		_ = filepath.Walk(prefix, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, 65534, 65534) })
		_ = os.Chmod(filepath.Dir(prefix), 0o755)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var out strings.Builder
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen within 5 s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Found: behind nginx on the same host with its default proxy_pass (no
// X-Forwarded-For, Host of the upstream), every client of the internet
// was a local client of a gateway without key: {"open":true} and the
// admin API. Neither that nor the documented configuration lets them in.
func TestSameHostProxyCannotMakeClientsLocal(t *testing.T) {
	g := startGateway(t, nil)
	upstream := strings.TrimPrefix(g.base, "http://")
	for _, tc := range []struct{ name, location string }{
		// HTTP/1.0 to the upstream is what gives it away.
		{"nginx default proxy_pass", ""},
		{"docs/deploy.md", "proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; " +
			"proxy_set_header X-Forwarded-Proto $scheme; proxy_http_version 1.1;"},
	} {
		proxy := startNginxProxy(t, upstream, tc.location)
		for _, path := range []string{"/api/v1/me", "/api/v1/streams", "/metrics"} {
			req, _ := http.NewRequest(http.MethodGet, proxy+path, nil)
			req.Host = "live.example.com" // what a remote browser sends
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("%s: GET %s through the proxy: %d %s", tc.name, path, resp.StatusCode, b)
			}
		}
	}
}
