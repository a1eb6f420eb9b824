package lite

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envGSONetns marks the test binary re-run inside its own network
// namespace by TestGSORefusedByRouteMTU.
const envGSONetns = "LITE_GSO_NETNS"

// The kernel's own per-destination refusal: in a network namespace of its
// own (only lo), 127.0.0.1 gets a route whose MTU (1,000) is smaller than
// the viewer's packets plus headers, as a tunnel's or a path MTU learned
// from ICMP is. The kernel refuses to segment for that address (EMSGSIZE
// on Linux 6.14+, EINVAL before) and fragments its plain datagrams. The
// viewer still receives every datagram, whole and in order, and GSO stays
// on for the transport. (That another viewer meanwhile keeps segmented
// messages is TestGSORefusedForOnePeerOnly's: tests target 127.0.0.1 only,
// so one route covers every receiver here.)
func TestGSORefusedByRouteMTU(t *testing.T) {
	if os.Getenv(envGSONetns) == "" {
		runInOwnNetns(t, "ip link set lo up && ip route replace local 127.0.0.1/32 dev lo table local mtu lock 1000")
		return
	}
	r := newGSORig(t)
	if !r.b.gso.Load() {
		t.Skip("this kernel has no UDP GSO")
	}
	small, smallAddr := r.receiver()
	bt := r.b.get(0)
	var ws [][]byte
	for frame := range 3 {
		for i := range 40 {
			seq := byte(frame*40 + i)
			r.queue(bt, smallAddr, 1, seq, 1100)
			ws = append(ws, want(1, seq, 1100))
		}
		r.b.flush(bt)
	}
	readAll(t, small, ws)
	st := r.b.stats()
	t.Logf("stats %+v", st)
	if !st.GSO {
		t.Fatal("a refusal for one destination turned GSO off for the transport")
	}
	if st.GSORefused != 1 {
		t.Errorf("GSORefused %d, want 1 (the first segmented message; the next go plain for a while)", st.GSORefused)
	}
	if st.Errors != 0 {
		t.Errorf("%d send errors", st.Errors)
	}
}

// runInOwnNetns runs the calling test again in a new network namespace
// (unshare, as root or in a user namespace) after setup (a shell command)
// and fails if it failed there. Only lo exists in it: nothing leaves the
// machine, and the routes set up vanish with it.
func runInOwnNetns(t *testing.T, setup string) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		skipOrFail(t, "needs unshare (util-linux) for a network namespace of its own: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "needs ip (iproute2) to set a route up in its network namespace: %v", err)
	}
	flag := "-rn" // a user namespace gives the rights in the new network namespace
	if os.Geteuid() == 0 {
		flag = "-n"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := t.Name()
	cmd := exec.CommandContext(ctx, unshare, flag, "sh", "-c", setup+` && exec "$0" "$@"`,
		os.Args[0], "-test.run=^"+name+"$", "-test.v=true", "-test.count=1")
	cmd.Env = append(os.Environ(), envGSONetns+"=1")
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log("netns| " + line)
	}
	switch {
	case err != nil && !bytes.Contains(out, []byte("=== RUN")):
		skipOrFail(t, "could not run in a network namespace of its own (unshare %s): %v", flag, err)
	case err != nil:
		t.Fatalf("failed in its network namespace: %v", err)
	case bytes.Contains(out, []byte("--- PASS: "+name)):
	case bytes.Contains(out, []byte("--- SKIP: "+name)):
		t.Skip("skipped in its network namespace (see the log)")
	default:
		t.Fatal("did not run in its network namespace")
	}
}

// skipOrFail skips, or fails when LIVEGATE_E2E=1 (CI must run everything).
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("LIVEGATE_E2E") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// When the socket itself cannot segment (UDP checksums off, which GSO
// needs, whatever the destination), the batch still arrives whole, one
// datagram per message, and GSO stays off for the transport.
func TestGSORefusedFallsBack(t *testing.T) {
	r := newGSORig(t)
	if !r.b.gso.Load() {
		t.Skip("this kernel has no UDP GSO")
	}
	rc, err := r.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	_ = rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_NO_CHECK, 1) })
	if serr != nil {
		t.Skipf("SO_NO_CHECK: %v", serr)
	}
	a, aAddr := r.receiver()
	bt := r.b.get(0)
	var wa [][]byte
	for i := range 10 {
		r.queue(bt, aAddr, 1, byte(i), 1000)
		wa = append(wa, want(1, byte(i), 1000))
	}
	r.b.flush(bt)
	readAll(t, a, wa)
	if r.b.gso.Load() {
		t.Fatal("GSO still on after the kernel refused it")
	}
	for i := range 5 {
		r.queue(bt, aAddr, 1, byte(20+i), 1000)
	}
	r.b.flush(bt)
	if st := r.b.stats(); st.Errors != 0 || st.GSORefused != 0 {
		t.Errorf("%d send errors, %d refused for a destination; want 0, 0", st.Errors, st.GSORefused)
	}
}
