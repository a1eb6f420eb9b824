package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/turn"
)

// ICE settings beyond the media ports: the built-in TURN server, the ICE
// servers handed to clients, and finding the public address.
type ICEConfig struct {
	// TURNUDP, TURNTCP and TURNTLS are the built-in TURN server's
	// listeners; empty: off (the server runs when any is set).
	TURNUDP string `flag:"turn-udp" help:"built-in TURN server's UDP address (e.g. :3478); empty: off"`
	TURNTCP string `flag:"turn-tcp" help:"built-in TURN server's TCP address (e.g. :3478); empty: off"`
	TURNTLS string `flag:"turn-tls" help:"built-in TURN server's TLS address (e.g. :5349, or :443 behind a TCP load balancer); needs turn-cert and turn-key; empty: off"`
	// TURNCert and TURNKey are PEM files for TURNTLS.
	TURNCert string `flag:"turn-cert" help:"PEM certificate (chain) for turn-tls"`
	TURNKey  string `flag:"turn-key" help:"PEM private key for turn-tls"`
	// TURNSecret signs the clients' time-limited credentials (for the
	// built-in server and external ones sharing it, as coturn's
	// static-auth-secret); empty: a random one per start.
	TURNSecret string `flag:"turn-secret" help:"shared secret of the TURN credentials handed to clients (TURN REST convention; also coturn's static-auth-secret for an external server); empty: random per start"`
	// TURNRelayIP is the address relayed candidates carry (default: the
	// first advertised WebRTC IP).
	TURNRelayIP string `flag:"turn-relay-ip" help:"address in the built-in TURN server's relayed candidates (default: the first webrtc-ips address)"`
	// TURNCredentialTTL is how long handed-out credentials stay valid.
	TURNCredentialTTL time.Duration `flag:"turn-credential-ttl" help:"how long TURN credentials handed to clients stay valid (a relayed session ends when they expire)"`
	// ICEServers are the stun:/turn:/turns: URLs handed to clients in
	// Link headers; "{host}" is the name the client reached HTTP at.
	// Empty: the built-in TURN server's listeners.
	ICEServers []string `flag:"ice-servers" help:"comma-separated stun:/turn:/turns: URLs handed to clients (Link headers, pages); {host} is the name the client used for HTTP; turn URLs get credentials from turn-secret; empty: the built-in TURN listeners"`
	// TURNAllocationsPerUser and TURNAllocationsPerIP are the built-in
	// server's allocation quotas (see turn.Config).
	TURNAllocationsPerUser int `flag:"turn-allocations-per-user" help:"relay allocations one user (the identity in its TURN username) holds at once on the built-in TURN server; beyond, 486 Allocation Quota Reached (a browser connection takes one per TURN URL; negative: unlimited)"`
	TURNAllocationsPerIP   int `flag:"turn-allocations-per-ip" help:"relay allocations one client address (IPv6: one /64) holds at once on the built-in TURN server; beyond, 486 (negative: unlimited)"`
}

// resolveIPs replaces "auto" in the advertised addresses with the address
// the STUN servers see, asked once at start.
func resolveIPs(ctx context.Context, ips, stunServers []string, log *slog.Logger) ([]string, error) {
	var out []string
	for _, ip := range ips {
		if ip != "auto" {
			out = append(out, ip)
			continue
		}
		if len(stunServers) == 0 {
			return nil, errors.New("webrtc-ips: auto needs stun-servers to ask")
		}
		var errs []error
		found := ""
		for _, u := range stunServers {
			a, err := publicAddr(ctx, u)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			found = a.String()
			log.Info("public address found by STUN", "server", u, "ip", found)
			break
		}
		if found == "" {
			return nil, fmt.Errorf("webrtc-ips auto: no STUN server answered: %w", errors.Join(errs...))
		}
		out = append(out, found)
	}
	return out, nil
}

// publicAddr asks one STUN server (stun:host:port) for this host's
// address as the internet sees it.
func publicAddr(ctx context.Context, server string) (netip.Addr, error) {
	u, err := stun.ParseURI(server)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("stun server %q: %w", server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", net.JoinHostPort(u.Host, strconv.Itoa(u.Port)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("stun server %q: %w", server, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 1500)
	// UDP: ask again every 500 ms until the deadline.
	for {
		if _, err := conn.Write(req.Raw); err != nil {
			return netip.Addr{}, fmt.Errorf("stun server %q: %w", server, err)
		}
		_ = conn.SetReadDeadline(minTime(dl, time.Now().Add(500*time.Millisecond)))
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(dl) {
				continue
			}
			return netip.Addr{}, fmt.Errorf("stun server %q: %w", server, err)
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := m.Decode(); err != nil || m.TransactionID != req.TransactionID {
			continue
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(m); err != nil {
			return netip.Addr{}, fmt.Errorf("stun server %q: no mapped address in the answer: %w", server, err)
		}
		a, ok := netip.AddrFromSlice(xa.IP)
		if !ok {
			return netip.Addr{}, fmt.Errorf("stun server %q: bad mapped address", server)
		}
		return a.Unmap(), nil
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// publicIPs are the addresses clients are told (the PUBLIC part of pairs).
func publicIPs(ips []string) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		pub, _, _ := strings.Cut(ip, "/")
		out = append(out, pub)
	}
	return out
}

// startTURN starts the built-in TURN server when a listener is set. It
// relays only to this gateway's media addresses: an open relay would let
// anyone reach any host from the server's network.
func (g *Gateway) startTURN(cfg Config) error {
	c := cfg.ICE
	if c.TURNUDP == "" && c.TURNTCP == "" && c.TURNTLS == "" {
		return nil
	}
	relayIP := c.TURNRelayIP
	if relayIP == "" {
		if len(g.ips) == 0 {
			return errors.New("turn-relay-ip: set it (or webrtc-ips): the address relayed candidates carry")
		}
		relayIP = publicIPs(g.ips)[0]
	}
	rip := net.ParseIP(relayIP)
	if rip == nil {
		return fmt.Errorf("turn-relay-ip: %q is not an IP address", relayIP)
	}
	var cert *tls.Certificate
	if c.TURNTLS != "" {
		if c.TURNCert == "" || c.TURNKey == "" {
			return errors.New("turn-tls: needs turn-cert and turn-key")
		}
		crt, err := tls.LoadX509KeyPair(c.TURNCert, c.TURNKey)
		if err != nil {
			return fmt.Errorf("turn-cert/turn-key: %w", err)
		}
		cert = &crt
	}
	allowed, mapped := g.mediaPeers()
	// Relay sockets send from the relay address when this machine has it
	// (no NAT), so the gateway sees the address the client announced.
	bind := ""
	if localAddr(rip) {
		bind = rip.String()
	}
	srv, err := turn.New(turn.Config{UDPAddr: c.TURNUDP, TCPAddr: c.TURNTCP, TLSAddr: c.TURNTLS, Cert: cert,
		RelayIP: rip, RelayBind: bind, Secret: g.turnSecret, Mapped: mapped, Logger: g.log,
		Ports:              mediaPorts(g.engine.LocalAddr()),
		AllocationsPerUser: c.TURNAllocationsPerUser, AllocationsPerIP: c.TURNAllocationsPerIP,
		Allowed: func(ip net.IP) bool {
			a, ok := netip.AddrFromSlice(ip)
			return ok && allowed[a.Unmap()]
		}})
	if err != nil {
		return err
	}
	g.turn = srv
	g.stack.push(func() { _ = g.turn.Close() })
	return nil
}

// mediaPorts is the UDP media port, the only one TURN relays to.
func mediaPorts(a net.Addr) []int {
	if u, ok := a.(*net.UDPAddr); ok && u.Port != 0 {
		return []int{u.Port}
	}
	return nil
}

// localAddr is whether ip is one of this machine's addresses.
func localAddr(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// mediaPeers are the addresses the gateway's media is reached at: the
// advertised ones (public and local of pairs) or, without any, this
// machine's interface addresses.
func (g *Gateway) mediaPeers() (map[netip.Addr]bool, map[string]net.IP) {
	allowed := map[netip.Addr]bool{}
	mapped := map[string]net.IP{}
	for _, ip := range g.ips {
		pub, local, pair := strings.Cut(ip, "/")
		for _, s := range []string{pub, local} {
			if a, err := netip.ParseAddr(s); err == nil {
				allowed[a.Unmap()] = true
			}
		}
		if pair {
			mapped[pub] = net.ParseIP(local)
		}
	}
	if len(g.ips) == 0 {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					allowed[p.Addr().Unmap()] = true
				}
			}
		}
	}
	return allowed, mapped
}

// iceServers is the list handed to clients.
func (g *Gateway) iceServers(cfg Config) (turn.ICEServers, error) {
	urls := cfg.ICE.ICEServers
	for _, u := range urls {
		if err := turn.CheckURL(u); err != nil {
			return turn.ICEServers{}, fmt.Errorf("ice-servers: %w", err)
		}
	}
	if len(urls) == 0 && g.turn != nil {
		udp, tcp, tlsAddr := g.turn.Addrs()
		if udp != nil {
			urls = append(urls, "turn:{host}:"+port(udp)+"?transport=udp")
		}
		if tcp != nil {
			urls = append(urls, "turn:{host}:"+port(tcp)+"?transport=tcp")
		}
		if tlsAddr != nil {
			urls = append(urls, "turns:{host}:"+port(tlsAddr)+"?transport=tcp")
		}
	}
	return turn.ICEServers{URLs: urls, Secret: g.turnSecret, TTL: cfg.ICE.TURNCredentialTTL}, nil
}

func port(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// logMedia says what clients are told and warns when that cannot work for
// clients elsewhere: private or loopback addresses while HTTP listens on
// a public interface.
func (g *Gateway) logMedia() {
	told := publicIPs(g.ips)
	if len(told) == 0 {
		told = []string{"interface addresses"}
	}
	args := []any{"webrtc_udp", addrString(g.UDPAddr()), "webrtc_tcp", addrString(g.TCPAddr()),
		"candidate_ips", strings.Join(told, ",")}
	if g.turn != nil {
		udp, tcp, tlsAddr := g.turn.Addrs()
		args = append(args, "turn_udp", addrString(udp), "turn_tcp", addrString(tcp), "turn_tls", addrString(tlsAddr))
	}
	if len(g.links.URLs) > 0 {
		args = append(args, "ice_servers", strings.Join(g.links.URLs, ","))
	}
	g.log.Info("media: clients are told", args...)
	if !publicListener(g.ln.Addr()) {
		return
	}
	var bad []string
	for _, ip := range told {
		if a, err := netip.ParseAddr(ip); err == nil && (a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()) {
			bad = append(bad, ip)
		}
	}
	if len(g.ips) == 0 {
		bad = append(bad, "(no webrtc-ips: interface addresses, private ones behind NAT)")
	}
	if len(bad) > 0 {
		g.log.Warn("HTTP listens on a public interface but media candidates are private or loopback: "+
			"clients on other networks will not connect; set webrtc-ips to the public address (PUBLIC/LOCAL behind 1:1 NAT, or auto with stun-servers)",
			"addresses", strings.Join(bad, ", "))
	}
}

// publicListener is whether a listens beyond loopback.
func publicListener(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && !ta.IP.IsLoopback()
}

// linkHeaders are the ICE servers as RFC 9725 Link header values.
func (g *Gateway) linkHeaders(host, user string) []string {
	list := g.links.For(host, user, time.Now())
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.Link()
	}
	return out
}

// selfTest serves the connectivity self-test page from the engine. It
// owns the test PeerConnections: each ends after its hold time, all end
// when the gateway closes, and at most maxChecks run at once (anyone may
// ask, and each costs an ICE agent and a DTLS handshake).
type selfTest struct {
	e       *rtc.Engine
	mu      sync.Mutex
	running int
	pcs     map[*webrtc.PeerConnection]*time.Timer
	closed  bool
}

const maxChecks = 32

func newSelfTest(e *rtc.Engine) *selfTest {
	return &selfTest{e: e, pcs: map[*webrtc.PeerConnection]*time.Timer{}}
}

func (s *selfTest) Check(ctx context.Context, offer, transport string, hold time.Duration) (string, error) {
	s.mu.Lock()
	if s.closed || s.running >= maxChecks {
		s.mu.Unlock()
		return "", rtc.ErrCheckBusy
	}
	s.running++
	s.mu.Unlock()
	pc, answer, err := s.e.Check(ctx, offer, transport)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.running--
		return "", err
	}
	if s.closed {
		s.running--
		_ = pc.Close()
		return "", rtc.ErrCheckBusy
	}
	s.pcs[pc] = time.AfterFunc(hold, func() { s.end(pc) })
	return answer, nil
}

func (s *selfTest) end(pc *webrtc.PeerConnection) {
	s.mu.Lock()
	_, ok := s.pcs[pc]
	if ok {
		delete(s.pcs, pc)
		s.running--
	}
	s.mu.Unlock()
	if ok {
		_ = pc.Close()
	}
}

// Close ends every test connection.
func (s *selfTest) Close() {
	s.mu.Lock()
	s.closed = true
	pcs := s.pcs
	s.pcs = map[*webrtc.PeerConnection]*time.Timer{}
	s.mu.Unlock()
	for pc, t := range pcs {
		t.Stop()
		_ = pc.Close()
	}
}

func (s *selfTest) MediaPorts() (udp, tcp int) {
	if a, ok := s.e.LocalAddr().(*net.UDPAddr); ok {
		udp = a.Port
	}
	if a, ok := s.e.TCPAddr().(*net.TCPAddr); ok {
		tcp = a.Port
	}
	return udp, tcp
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// mediaAddrs resolves the media settings: "off" turns one off, and ICE-TCP
// defaults to the UDP address (the same port number, one firewall rule
// pair), except with port 0, where each gets a free port of its own.
func mediaAddrs(udp, tcp string) (string, string, error) {
	if udp == "off" {
		udp = ""
	}
	switch tcp {
	case "off":
		tcp = ""
	case "":
		if udp == "" {
			return "", "", errors.New("webrtc-tcp: set an address when webrtc-udp is off")
		}
		tcp = udp
	}
	if udp == "" && tcp == "" {
		return "", "", errors.New("webrtc-udp and webrtc-tcp are both off: no media could flow")
	}
	return udp, tcp, nil
}
