package lite

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/alert"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// dtlsOnly is the viewer's side of its UDP socket as its DTLS client sees
// it: STUN (answers, nudges) is skipped. kill ends the client's reads
// without a close_notify, so that a test can drop the client's goroutines.
type dtlsOnly struct {
	*net.UDPConn
	dead atomic.Bool
	// capture, if set, takes what the client writes instead of the
	// network (and Close leaves the socket open), so that a test can
	// deliver it when it chooses.
	capture chan []byte
}

func (d *dtlsOnly) Close() error {
	if d.capture != nil {
		return nil // the test's cleanup closes the socket
	}
	return d.UDPConn.Close()
}

func (d *dtlsOnly) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, err := d.Read(b)
		if d.dead.Load() {
			return 0, nil, net.ErrClosed
		}
		if err != nil {
			return 0, nil, err
		}
		if n > 0 && b[0] >= 20 && b[0] <= 63 {
			return n, d.RemoteAddr(), nil
		}
	}
}

func (d *dtlsOnly) WriteTo(b []byte, _ net.Addr) (int, error) {
	if d.capture != nil {
		select {
		case d.capture <- append([]byte(nil), b...):
		default:
		}
		return len(b), nil
	}
	return d.Write(b)
}

func (d *dtlsOnly) kill() {
	d.dead.Store(true)
	_ = d.SetReadDeadline(time.Now())
}

// viewer is a test client of one peer: ICE check, DTLS client, SRTCP out.
type viewer struct {
	conn   *dtlsOnly
	dc     *dtls.Conn
	srtcp  *srtp.Context
	reason chan string // the peer's OnClose reason
}

// connectViewer makes a peer and a client, and completes ICE and DTLS.
func connectViewer(t *testing.T, r *rig) (*Peer, *viewer) {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	v := &viewer{reason: make(chan string, 1)}
	connected := make(chan struct{})
	p, err := r.tr.NewPeer(PeerParams{
		RemoteUfrag: "cli", RemotePwd: "clientpasswordclientpass", Fingerprints: []string{"sha-256 " + colonHex(sum[:])},
		OnConnected: func() { close(connected) },
		OnClose:     func(why string) { v.reason <- why },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ufrag, pwd := p.LocalCredentials()
	v.conn = &dtlsOnly{UDPConn: r.client()}
	if _, err := v.conn.Write(bindingRequest(t, ufrag+":cli", pwd, true).Raw); err != nil {
		t.Fatal(err)
	}
	v.dc, err = dtls.Client(v.conn, v.conn.RemoteAddr(), &dtls.Config{
		Certificates:           []tls.Certificate{cert},
		InsecureSkipVerify:     true,
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM},
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.dc.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	state, ok := v.dc.ConnectionState()
	if !ok {
		t.Fatal("no client state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfileAeadAes128Gcm}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		t.Fatal(err)
	}
	if v.srtcp, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		t.Fatal("peer not connected")
	}
	return p, v
}

// sendReport sends the viewer's first SRTCP, as a browser's receiver
// report: proof that it finished the handshake.
func (v *viewer) sendReport(t *testing.T) {
	t.Helper()
	raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := v.srtcp.EncryptRTCP(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.conn.Write(enc); err != nil {
		t.Fatal(err)
	}
}

func waitReleased(t *testing.T, ps ...*Peer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range ps {
		for p.hs.Load() != nil {
			if time.Now().After(deadline) {
				t.Fatal("DTLS server not released after the viewer's SRTCP")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func waitEnded(t *testing.T, p *Peer, v *viewer, want string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("peer did not end")
	}
	if why := <-v.reason; why != want {
		t.Fatalf("peer ended because %q, want %q", why, want)
	}
}

// A viewer that closes its DTLS association (a browser tab's pc.close())
// ends its peer at once, before and after the peer released its DTLS
// server.
func TestViewerCloseNotifyEndsPeer(t *testing.T) {
	for _, released := range []bool{false, true} {
		name := "handshake kept"
		if released {
			name = "released"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			p, v := connectViewer(t, r)
			if released {
				v.sendReport(t)
				waitReleased(t, p)
			}
			if err := v.dc.Close(); err != nil {
				t.Fatal(err)
			}
			waitEnded(t, p, v, "dtls closed by the viewer")
		})
	}
}

// Ending a peer tells its viewer with a close_notify that the viewer's
// DTLS stack accepts, also after the peer released its DTLS server.
func TestPeerCloseNotifiesViewer(t *testing.T) {
	for _, released := range []bool{false, true} {
		name := "handshake kept"
		if released {
			name = "released"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			p, v := connectViewer(t, r)
			if released {
				v.sendReport(t)
				waitReleased(t, p)
			}
			got := make(chan error, 1)
			go func() {
				_, err := v.dc.Read(make([]byte, 1500))
				got <- err
			}()
			p.Close()
			select {
			case err := <-got:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("viewer read %v, want io.EOF (close_notify)", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("viewer got no close_notify")
			}
		})
	}
}

// Alerts that do not open with the association's keys do not end a
// released peer: anyone who knows the viewer's address could send them.
func TestForgedAlertsIgnored(t *testing.T) {
	r := newRig(t)
	p, v := connectViewer(t, r)
	v.sendReport(t)
	waitReleased(t, p)
	for _, epoch := range []uint16{0, 1} {
		rec := &recordlayer.RecordLayer{
			Header:  recordlayer.Header{Epoch: epoch, Version: protocol.Version1_2, SequenceNumber: 99},
			Content: &alert.Alert{Level: alert.Fatal, Description: alert.CloseNotify},
		}
		raw, err := rec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if epoch == 1 { // as if sealed: nonce and tag, wrong key
			raw = append(raw, make([]byte, 24)...)
			raw[11], raw[12] = 0, byte(len(raw)-13)
		}
		if _, err := v.conn.Write(raw); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-p.Done():
		t.Fatalf("a forged alert ended the peer: %s", <-v.reason)
	case <-time.After(500 * time.Millisecond):
	}
	if !p.Connected() {
		t.Fatal("peer not connected")
	}
}

// Once released, a connected viewer costs no goroutine: measured over
// several peers against the goroutines before them (the viewers' own DTLS
// clients are stopped first; a peer that kept pion's Conn costs three,
// plus one for the old close_notify watcher).
func TestReleasedPeersHaveNoGoroutines(t *testing.T) {
	r := newRig(t)
	const n = 8
	settle := func() int {
		last, same := runtime.NumGoroutine(), 0
		for range 100 {
			time.Sleep(20 * time.Millisecond)
			if g := runtime.NumGoroutine(); g == last {
				if same++; same == 5 {
					break
				}
			} else {
				last, same = g, 0
			}
		}
		return last
	}
	before := settle()
	var peers []*Peer
	var viewers []*viewer
	for range n {
		p, v := connectViewer(t, r)
		peers, viewers = append(peers, p), append(viewers, v)
	}
	for _, v := range viewers {
		v.sendReport(t)
	}
	waitReleased(t, peers...)
	for _, v := range viewers {
		v.conn.kill()
	}
	after := settle()
	per := float64(after-before) / n
	t.Logf("goroutines: %d before, %d with %d connected peers: %.2f per peer", before, after, n, per)
	if per >= 0.5 {
		t.Fatalf("%.2f goroutines per connected peer, want none", per)
	}
	for _, p := range peers {
		if !p.Connected() {
			t.Fatal("a released peer is not connected")
		}
	}
}

// A peer closed while its handshake finishes never becomes connected and
// never calls OnConnected (it used to be marked connected after Close).
func TestClosedDuringHandshakeNeverConnects(t *testing.T) {
	r := newRig(t)
	testHookConnected = func(p *Peer) { p.Close() }
	t.Cleanup(func() { testHookConnected = nil })
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var onConnected atomic.Bool
	p, err := r.tr.NewPeer(PeerParams{
		RemoteUfrag: "cli", RemotePwd: "clientpasswordclientpass", Fingerprints: []string{"sha-256 " + colonHex(sum[:])},
		OnConnected: func() { onConnected.Store(true) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ufrag, pwd := p.LocalCredentials()
	conn := &dtlsOnly{UDPConn: r.client()}
	if _, err := conn.Write(bindingRequest(t, ufrag+":cli", pwd, true).Raw); err != nil {
		t.Fatal(err)
	}
	dc, err := dtls.Client(conn, conn.RemoteAddr(), &dtls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = dc.HandshakeContext(ctx)
	select {
	case <-p.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("peer did not end")
	}
	time.Sleep(50 * time.Millisecond)
	if p.Connected() || onConnected.Load() {
		t.Fatalf("closed peer connected=%v, OnConnected called=%v", p.Connected(), onConnected.Load())
	}
	_ = dc.Close()
}

// Found in review: a viewer's close_notify sent around the release of its
// peer's DTLS server was lost (the peer then ended only at consent
// expiry, 15 s later): one arriving between the server's drop and the
// records being kept was neither handed to the server nor examined, and
// one the server read as it was dropped was ignored. Each way it now ends
// the peer at once.
func TestCloseNotifyAroundRelease(t *testing.T) {
	cases := []struct {
		name string
		// deliver hands the viewer's close_notify to the peer from inside
		// release (closed: after the server's packet conn closed).
		closed  bool
		deliver func(t *testing.T, v *viewer, hs *dtlsServer, b []byte)
	}{
		{"arrives while released", false, func(t *testing.T, v *viewer, _ *dtlsServer, b []byte) {
			if _, err := v.conn.Write(b); err != nil {
				t.Error(err)
			}
			time.Sleep(100 * time.Millisecond) // the socket's reader has it
		}},
		{"read by the server as it is dropped", false, func(t *testing.T, _ *viewer, hs *dtlsServer, b []byte) {
			hs.vconn.push(b)
			time.Sleep(100 * time.Millisecond) // the server reads it before its conn closes
		}},
		{"queued after the server stopped", true, func(t *testing.T, _ *viewer, hs *dtlsServer, b []byte) {
			time.Sleep(50 * time.Millisecond) // the server's reader has returned
			hs.vconn.push(b)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Set before the transport starts and reset after it stopped:
			// its sweeper reads it.
			type target struct {
				p      *Peer
				v      *viewer
				notify []byte
			}
			var at atomic.Pointer[target]
			testHookReleasing = func(q *Peer, hs *dtlsServer, closed bool) {
				if a := at.Load(); a != nil && a.p == q && closed == c.closed {
					c.deliver(t, a.v, hs, a.notify)
				}
			}
			t.Cleanup(func() { testHookReleasing = nil })
			r := newRig(t)
			p, v := connectViewer(t, r)
			v.conn.capture = make(chan []byte, 4)
			if err := v.dc.Close(); err != nil {
				t.Fatal(err)
			}
			var notify []byte
			select {
			case notify = <-v.conn.capture:
			case <-time.After(3 * time.Second):
				t.Fatal("the viewer sent no close_notify")
			}
			at.Store(&target{p: p, v: v, notify: notify})
			v.sendReport(t) // releases the server at the next sweep
			select {
			case <-p.Done():
			case <-time.After(4 * time.Second):
				t.Fatal("the peer did not end on the viewer's close_notify")
			}
			if why := <-v.reason; why != "dtls closed by the viewer" {
				t.Fatalf("peer ended because %q", why)
			}
		})
	}
}
