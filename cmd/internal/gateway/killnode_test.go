package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envNode makes the test binary run one gateway instead of the tests: a
// node in its own process that a test can kill -9 (SIGKILL) for real.
// Its value is the HTTP address; envNodeParents the relay parents.
const (
	envNode        = "LIVEGATE_TEST_NODE_HTTP"
	envNodeParents = "LIVEGATE_TEST_NODE_PARENTS"
)

func init() {
	if addr := os.Getenv(envNode); addr != "" {
		os.Exit(runNode(addr, os.Getenv(envNodeParents)))
	}
}

// runNode serves one gateway until SIGTERM (or SIGKILL, which is the point).
func runNode(addr, parents string) int {
	cfg := Config{HTTP: addr, WebRTCUDP: "127.0.0.1:0", WebRTCIPs: []string{"127.0.0.1"},
		RelayParams: RelayParams{Grace: 5 * time.Second}, ConnectTimeout: 10 * time.Second, ClusterKey: clusterKey,
		TreeParams: TreeParams{Linger: 30 * time.Second}, RecordDir: os.TempDir() + "/livegate-node-rec", RTMPAddr: "", RTSPAddr: "",
		RecorderParams: RecorderParams{SpoolDir: os.TempDir() + "/livegate-node-spool"}}
	if parents != "" {
		cfg.TreeParams.Parents = strings.Split(parents, ",")
	}
	g, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startNodeProcess runs a gateway in a child process pulling from parents
// and waits until it answers.
func startNodeProcess(t *testing.T, parents ...*testGateway) (*testGateway, *exec.Cmd) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var ps []string
	for _, p := range parents {
		ps = append(ps, p.base)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envNode+"="+addr, envNodeParents+"="+strings.Join(ps, ","))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	g := &testGateway{base: "http://" + addr}
	waitFor(t, 20*time.Second, "the node process to answer", func() bool {
		resp, err := httpClient.Get(g.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return g, cmd
}

// TestRelayKill9Process: the regional edge feeding a leaf is a process of
// its own and gets SIGKILL: the operating system closes its sockets, nothing
// is said to anyone. The leaf moves to the other regional edge, its viewers
// see one gap under a second, one SSRC and continuous numbering.
func TestRelayKill9Process(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.ClusterKey = clusterKey })
	r1, proc := startNodeProcess(t, origin)
	r2 := edge(t, 30*time.Second, origin)
	leaf := edge(t, 30*time.Second, r1, r2)
	origin.playing(t, "kill9/cam")
	origin.waitStreamLive(t, 5*time.Second, "kill9/cam")
	vs := []*viewer{leaf.view(t, "kill9/cam"), leaf.view(t, "kill9/cam")}
	for _, v := range vs {
		v.waitFrames(t, 10*time.Second, 61, "frames at the leaf")
	}
	if l := leaf.Puller().Links(); len(l) != 1 || l[0].Parent != r1.base {
		t.Fatalf("leaf pulls from %v, want the node process %s", l, r1.base)
	}
	killedAt := time.Now()
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	var reps []gapReport
	for i, v := range vs {
		reps = append(reps, measureGap(fmt.Sprintf("viewer%d", i+1), v, killedAt))
	}
	checkGaps(t, "parent process killed (SIGKILL)", reps)
	if l := leaf.Puller().Links(); len(l) != 1 || l[0].Parent != r2.base {
		t.Errorf("leaf pulls from %v after the kill, want %s", l, r2.base)
	}
}
