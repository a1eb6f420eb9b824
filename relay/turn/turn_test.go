package turn

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/livegate/livegate/internal/testenv"
)

// start runs a TURN server with c; it stops with the test.
func start(t *testing.T, c Config) *Server {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// client is a TURN client of server over conn, listening; the caller closes it.
func client(t *testing.T, server string, conn net.PacketConn, user, pass string) *pionturn.Client {
	t.Helper()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, STUNServerAddr: server,
		Username: user, Password: pass, Realm: "livegate", Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// allocate asks the server for a relay over conn with the credentials.
func allocate(t *testing.T, conn net.Conn, user, pass string) (net.Addr, error) {
	t.Helper()
	c := client(t, conn.RemoteAddr().String(), pionturn.NewSTUNConn(conn), user, pass)
	defer c.Close()
	relay, err := c.Allocate()
	if err != nil {
		return nil, err
	}
	defer relay.Close()
	return relay.LocalAddr(), nil
}

// udpListener is a UDP socket on 127.0.0.1; it closes with the test.
func udpListener(t *testing.T) net.PacketConn {
	t.Helper()
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestTURNOverTCPAndTLS: TCP and TLS listeners allocate relays with REST
// credentials from the secret, at the configured relay address, and refuse
// expired or forged ones.
func TestTURNOverTCPAndTLS(t *testing.T) {
	const secret = "s3cret"
	cert, _ := testenv.LoopbackCert(t)
	s := start(t, Config{TCPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Cert: &cert,
		RelayIP: net.IPv4(127, 0, 0, 1), RelayBind: "127.0.0.1", Secret: secret})
	_, tcpAddr, tlsAddr := s.Addrs()
	dial := map[string]func() (net.Conn, error){
		"tcp": func() (net.Conn, error) { return net.Dial("tcp", tcpAddr.String()) },
		"tls": func() (net.Conn, error) {
			return tls.Dial("tcp", tlsAddr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test cert
		},
	}
	now := time.Now()
	good, goodPass := Credentials(secret, "alice", time.Hour, now)
	old, oldPass := Credentials(secret, "alice", -time.Minute, now)
	forged, forgedPass := Credentials("other", "alice", time.Hour, now)
	for name, d := range dial {
		for _, tc := range []struct {
			what, user, pass string
			ok               bool
		}{{"valid", good, goodPass, true}, {"expired", old, oldPass, false}, {"forged", forged, forgedPass, false}} {
			conn, err := d()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			addr, err := allocate(t, conn, tc.user, tc.pass)
			conn.Close()
			if tc.ok != (err == nil) {
				t.Errorf("%s, %s credentials: allocation error %v", name, tc.what, err)
			}
			if err == nil && !addr.(*net.UDPAddr).IP.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("%s: relay at %v", name, addr)
			}
		}
	}
	if _, err := New(Config{TLSAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), Secret: secret}); err == nil {
		t.Error("TLS without a certificate accepted")
	}
}

// Found: the server granted TCP allocations (RFC 6062), and permissions
// look at the peer's IP only, so credentials (which /check hands to
// anyone) opened TCP connections to any port of the media addresses.
func TestNoTCPRelay(t *testing.T) {
	const secret = "s3cret"
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	s := start(t, Config{TCPAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), RelayBind: "127.0.0.1", Secret: secret})
	_, tcpAddr, _ := s.Addrs()
	conn, err := net.Dial("tcp", tcpAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	user, pass := Credentials(secret, "mallory", time.Hour, time.Now())
	c := client(t, tcpAddr.String(), pionturn.NewSTUNConn(conn), user, pass)
	defer c.Close()
	alloc, err := c.AllocateTCP()
	if err != nil {
		return // refused: what we want
	}
	defer alloc.Close()
	peer, err := alloc.Dial("tcp", target.Addr().String())
	if err == nil {
		peer.Close()
		t.Fatal("a TURN client opened a TCP connection to a local service through the relay")
	}
	t.Logf("TCP allocation granted but connect failed: %v", err)
}

// TestUDPRelayOnlyToMediaPorts: with Ports set, a client holding valid
// credentials reaches the media port through the relay and no other UDP
// service on the same (allowed) address.
func TestUDPRelayOnlyToMediaPorts(t *testing.T) {
	const secret = "s3cret"
	media, other := udpListener(t), udpListener(t)
	s := start(t, Config{UDPAddr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), RelayBind: "127.0.0.1", Secret: secret,
		Ports: []int{media.LocalAddr().(*net.UDPAddr).Port}})
	udpAddr, _, _ := s.Addrs()
	user, pass := Credentials(secret, "mallory", time.Hour, time.Now())
	c := client(t, udpAddr.String(), udpListener(t), user, pass)
	defer c.Close()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	received := func(l net.PacketConn) bool {
		if err := l.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _, err := l.ReadFrom(buf)
		return err == nil && string(buf[:n]) == "hello"
	}
	if _, err := relay.WriteTo([]byte("hello"), other.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if received(other) {
		t.Fatal("a TURN client reached a UDP port other than the media port through the relay")
	}
	if _, err := relay.WriteTo([]byte("hello"), media.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if !received(media) {
		t.Fatal("the media port got nothing through the relay")
	}
}
