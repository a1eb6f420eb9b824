package lite

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
	"go.uber.org/goleak"
)

// newBareTransport is a transport on a loopback socket with nothing
// reading it for pion; close stops both.
func newBareTransport(t *testing.T) (tr *Transport, close func()) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err = New(Params{Conn: conn, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return tr, func() {
		tr.Close()
		_ = conn.Close()
	}
}

// probingPeer is a connected peer with transport-cc that can send probes
// (to a port nobody reads), as Close would find one that has not ended
// yet.
func probingPeer(t *testing.T, tr *Transport) *Peer {
	t.Helper()
	key, salt := make([]byte, 16), make([]byte, 12)
	_, _ = rand.Read(key)
	_, _ = rand.Read(salt)
	out, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{t: tr, done: make(chan struct{}), cc: newCC(CC{ExtID: 3}), out: out}
	ap := netip.MustParseAddrPort("127.0.0.1:9")
	p.sel.Store(&remote{ap: ap, ua: net.UDPAddrFromAddrPort(ap)})
	p.connected.Store(true)
	p.cc.hist = new([ccHist]sentPacket)
	return p
}

// Found in review: Probe added its goroutine to the transport's wait group
// after only looking at the peer, so a probe could start while (or after)
// Close waited: a WaitGroup misuse and a goroutine nobody waits for. Now
// no probe starts once Close has begun, and Close racing probes leaves
// nothing running (run with -race).
func TestProbeDuringClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for round := range 20 {
		tr, closeTr := newBareTransport(t)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 3 {
			p := probingPeer(t, tr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					p.Probe(2e6, 1234, 97)
					runtime.Gosched()
				}
			}()
		}
		time.Sleep(time.Duration(round%4) * time.Millisecond)
		closeTr()
		close(stop)
		wg.Wait()
		// A peer Close has not reached (still connected) starts nothing.
		p := probingPeer(t, tr)
		before := runtime.NumGoroutine()
		if p.Probe(2e6, 1234, 97) {
			t.Fatal("a probe started after the transport closed")
		}
		if g := runtime.NumGoroutine(); g > before {
			t.Fatalf("%d goroutines after Probe on a closed transport, %d before", g, before)
		}
		if p.cc.probe.busy {
			t.Fatal("a probe refused by a closed transport left the peer busy")
		}
	}
}

// Close racing ICE-TCP connections (some still to send their first frame,
// some for a lite peer) leaves no goroutine behind once the listener is
// closed too: a connection being classified no longer waits out its 10 s
// first-frame timeout, and no connection's writer starts after Close.
func TestCloseDuringTCPAccepts(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	for round := range 5 {
		tr, closeTr := newBareTransport(t)
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := tr.WrapTCP(ln)
		p, err := tr.NewPeer(PeerParams{RemoteUfrag: "cli", RemotePwd: "clientpasswordclientpass",
			Fingerprints: []string{"sha-256 00"}})
		if err != nil {
			t.Fatal(err)
		}
		ufrag, pwd := p.LocalCredentials()
		req := bindingRequest(t, ufrag+":cli", pwd, true).Raw
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(req)))
		frame = append(frame, req...)
		var conns []net.Conn
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					return // the listener closed first
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				if i%2 == 0 {
					_, _ = c.Write(frame) // for the lite peer
				} // else silent: still being classified
			}()
		}
		time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		closeTr()
		_ = l.Close()
		wg.Wait()
		// Checked while the viewers' ends are still open: closing them
		// would end what waits on them anyway.
		err = goleak.Find(ignore)
		for _, c := range conns {
			_ = c.Close()
		}
		if err != nil {
			t.Fatalf("round %d: after Close: %v", round, err)
		}
	}
}
