package lite

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// rig is a transport on a loopback socket whose pion side is read by a
// goroutine that reports what lite left to pion.
type rig struct {
	t      *testing.T
	tr     *Transport
	conn   *net.UDPConn
	toPion chan []byte
}

func newRig(t *testing.T) *rig {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Params{Conn: conn, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, tr: tr, conn: conn, toPion: make(chan []byte, 16)}
	pc := tr.PacketConn().(*demuxConn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFromAddrPort(buf)
			if err != nil {
				return
			}
			r.toPion <- append([]byte(nil), buf[:n]...)
		}
	}()
	t.Cleanup(func() {
		tr.Close()
		_ = conn.Close()
		<-done
	})
	return r
}

func (r *rig) client() *net.UDPConn {
	c, err := net.DialUDP("udp4", nil, r.conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

func bindingRequest(t *testing.T, user, pwd string, useCandidate bool) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(user)}
	if useCandidate {
		setters = append(setters, useCandidateAttr{})
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type useCandidateAttr struct{}

func (useCandidateAttr) AddTo(m *stun.Message) error { m.Add(stun.AttrUseCandidate, nil); return nil }

// Datagrams that are not for a lite peer reach pion untouched: a STUN
// request for a ufrag lite does not know, and media from an unknown address.
func TestForeignPacketsPassToPion(t *testing.T) {
	r := newRig(t)
	c := r.client()
	for _, p := range [][]byte{
		bindingRequest(t, "pionufrag:remote", "pw", false).Raw,
		append([]byte{0x80, 0x60, 0, 1}, make([]byte, 20)...),
	} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-r.toPion:
			if !bytes.Equal(got, p) {
				t.Fatalf("pion got %x, want %x", got, p)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("packet %x did not reach pion", p[:4])
		}
	}
}

// A binding request for a lite peer is answered only with the right
// password; the answer names the client's address and is signed with the
// peer's password; the request's address becomes the media path.
func TestBindingNeedsIntegrity(t *testing.T) {
	r := newRig(t)
	p, err := r.tr.NewPeer(PeerParams{RemoteUfrag: "rem", RemotePwd: "remotepasswordremotepass", Fingerprints: []string{"sha-256 00"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ufrag, pwd := p.LocalCredentials()
	c := r.client()

	if _, err := c.Write(bindingRequest(t, ufrag+":rem", "wrong-password-wrong-pass", false).Raw); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("answered a request with the wrong password: %x", buf[:n])
	}
	if p.RemoteAddr().IsValid() {
		t.Fatal("an unauthenticated request chose the media path")
	}
	select {
	case got := <-r.toPion:
		t.Fatalf("a request for a lite ufrag reached pion: %x", got)
	default:
	}

	req := bindingRequest(t, ufrag+":rem", pwd, true)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	// Answer, then the nudge (a request of ours): find the answer.
	var resp *stun.Message
	for resp == nil {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := m.Decode(); err != nil {
			t.Fatal(err)
		}
		if m.Type == stun.BindingSuccess {
			resp = m
		}
	}
	if resp.TransactionID != req.TransactionID {
		t.Fatal("answer to another transaction")
	}
	if err := stun.NewShortTermIntegrity(pwd).Check(resp); err != nil {
		t.Fatalf("answer integrity: %v", err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(resp); err != nil {
		t.Fatal(err)
	}
	want := c.LocalAddr().(*net.UDPAddr)
	if !xor.IP.Equal(want.IP) || xor.Port != want.Port {
		t.Fatalf("mapped address %v, want %v", xor, want)
	}
	if got := p.RemoteAddr(); got != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(want.Port)) {
		t.Fatalf("media path %v, want %v", got, want)
	}
}

// Garbage on the shared socket never panics and never reaches a peer.
func TestGarbageIsHarmless(t *testing.T) {
	r := newRig(t)
	p, err := r.tr.NewPeer(PeerParams{RemoteUfrag: "rem", RemotePwd: "remotepasswordremotepass", Fingerprints: []string{"sha-256 00"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	r.tr.learn(p, from) // as if it had passed a check
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(120))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if len(b) > 0 && rng.IntN(4) == 0 {
			b[0] = byte(rng.IntN(4)) // STUN-looking
		}
		r.tr.handle(b, from)
		r.tr.handle(b, netip.MustParseAddrPort("127.0.0.1:40001"))
	}
	if p.Connected() {
		t.Fatal("garbage connected a peer")
	}
}

// The TCP listener handed to pion's ICE-TCP mux is closed while the mux
// waits in Accept (as at shutdown): Accept returns an error, and the
// error's write and read do not race (run with -race).
func TestTCPListenerCloseWhileAccepting(t *testing.T) {
	r := newRig(t)
	for range 20 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := r.tr.WrapTCP(ln)
		errc := make(chan error, 1)
		go func() {
			_, err := l.Accept()
			if err != nil {
				_ = err.Error() // as pion's mux does when it logs it
			}
			errc <- err
		}()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("Accept on a closed listener returned no error")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
	}
}
