package turn

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/livegate/livegate/internal/testenv"
)

// Found: the built-in TURN server had no allocation quota: any holder of
// credentials (the /check page hands them out without a token) could open
// relays until ports or memory ran out. With quotas per user (the
// identity of the REST username, whatever credential of it is used) and
// per address, a real TURN client's extra Allocate gets 486 Allocation
// Quota Reached, other users and addresses still allocate, and a released
// allocation frees its slot.
func TestAllocationQuota(t *testing.T) {
	const secret = "s3cret"
	var logs testenv.Buffer
	s := start(t, Config{UDPAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), RelayBind: "127.0.0.1", Secret: secret,
		AllocationsPerUser: 2, AllocationsPerIP: 3, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	udpAddr, _, _ := s.Addrs()
	// alloc allocates for identity from a new socket on ip, with fresh
	// credentials each time (as every answer hands out).
	n := 0
	alloc := func(identity, ip string) (net.PacketConn, error) {
		t.Helper()
		n++
		user, pass := Credentials(secret, identity, time.Hour+time.Duration(n)*time.Second, time.Now())
		conn, err := net.ListenPacket("udp4", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		c := client(t, udpAddr.String(), conn, user, pass)
		t.Cleanup(c.Close)
		relay, err := c.Allocate()
		if err == nil {
			t.Cleanup(func() { _ = relay.Close() })
		}
		return relay, err
	}
	a1, err := alloc("alice", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("alice", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	_, err = alloc("alice", "127.0.0.1")
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("alice's third allocation: %v, want 486 Allocation Quota Reached", err)
	}
	t.Logf("refused: %v", err)
	if !strings.Contains(logs.String(), "quota reached") || !strings.Contains(logs.String(), "user=alice") {
		t.Errorf("no log line naming the user:\n%s", logs.String())
	}
	// Another user from the same address still allocates, up to the
	// address's quota.
	if _, err := alloc("bob", "127.0.0.1"); err != nil {
		t.Fatalf("bob from the same address: %v", err)
	}
	if _, err := alloc("bob", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("a 4th allocation from 127.0.0.1: %v, want 486", err)
	}
	// Another address is not affected.
	if _, err := alloc("carol", "127.0.0.2"); err != nil {
		t.Fatalf("carol from 127.0.0.2: %v", err)
	}
	if got := s.Allocations(); got != 4 {
		t.Errorf("%d allocations, want 4", got)
	}
	// Releasing one gives its slot back.
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for s.Allocations() != 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := alloc("alice", "127.0.0.1"); err != nil {
		t.Fatalf("alice after releasing one: %v", err)
	}
}

// A burst of Allocates (each its own socket, the same user) cannot pass
// the quota together.
func TestAllocationQuotaBurst(t *testing.T) {
	const secret = "s3cret"
	s := start(t, Config{UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), RelayBind: "127.0.0.1",
		Secret: secret, AllocationsPerUser: 3})
	_, tcpAddr, _ := s.Addrs()
	user, pass := Credentials(secret, "mallory", time.Hour, time.Now())
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", tcpAddr.String())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			c, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: tcpAddr.String(), STUNServerAddr: tcpAddr.String(),
				Username: user, Password: pass, Realm: "livegate", Conn: pionturn.NewSTUNConn(conn)})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if err := c.Listen(); err != nil {
				t.Error(err)
				return
			}
			relay, err := c.Allocate()
			if err != nil {
				return
			}
			mu.Lock()
			granted++
			mu.Unlock()
			time.Sleep(500 * time.Millisecond) // hold it while the others ask
			_ = relay.Close()
		}()
	}
	wg.Wait()
	if granted != 3 {
		t.Fatalf("%d of 12 concurrent allocations granted, quota 3", granted)
	}
}
