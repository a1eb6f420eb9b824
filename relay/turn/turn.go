// Package turn is livegate's built-in TURN server (RFC 8656, pion/turn)
// and the ICE server list handed to clients: STUN and TURN URLs with
// time-limited credentials derived from a shared secret (the TURN REST
// convention, as coturn's use-auth-secret), sent as RFC 9725 Link headers.
//
// Clients whose network lets neither UDP nor TCP to the media port through
// reach a TURN listener instead (TURN over TLS on 443 passes most
// corporate proxies), and the TURN server relays to the gateway.
package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"

	pionturn "github.com/pion/turn/v5"

	"github.com/livegate/livegate/relay/rtc"
)

// Config configures the built-in TURN server. Listeners with an empty
// address are off.
type Config struct {
	UDPAddr string // e.g. ":3478"
	TCPAddr string // e.g. ":3478"
	TLSAddr string // e.g. ":5349"; needs Cert
	Cert    *tls.Certificate
	// RelayIP is the address put in relayed candidates: where peers (the
	// gateway itself) send to reach a client. Required.
	RelayIP net.IP
	// RelayBind is the local address relay sockets bind to (default: all
	// addresses).
	RelayBind string
	// Secret verifies the credentials (see Credentials).
	Secret string
	Realm  string
	// Mapped are the gateway's PUBLIC/LOCAL address pairs (1:1 NAT):
	// relayed packets to PUBLIC go to LOCAL.
	Mapped map[string]net.IP
	// Allowed, if set, says which peers clients may relay to; nil: any.
	// A relay only for this gateway should allow only its media addresses,
	// or clients could use it to reach any host from the server's network.
	Allowed func(ip net.IP) bool
	// Ports, if set, are the only peer ports relayed packets may go to
	// (the gateway's media port). The permission check sees addresses
	// only, so without this a client could reach every UDP service on the
	// allowed addresses (a DNS resolver or a metrics agent on loopback).
	Ports []int
	// AllocationsPerUser and AllocationsPerIP bound the relay allocations
	// one user (the identity of its REST username) and one client address
	// (IPv6: /64) hold at once; beyond, an Allocate gets 486 Allocation
	// Quota Reached. 0: the defaults; negative: unlimited.
	AllocationsPerUser int
	AllocationsPerIP   int
	Logger             *slog.Logger
}

// Server is a running TURN server.
type Server struct {
	srv *pionturn.Server
	udp net.PacketConn
	tcp net.Listener
	tls net.Listener
}

// New binds the listeners and starts serving.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Secret == "" {
		return nil, errors.New("turn: a secret is required")
	}
	if cfg.RelayIP == nil {
		return nil, errors.New("turn: the relay address is not set")
	}
	if cfg.UDPAddr == "" && cfg.TCPAddr == "" && cfg.TLSAddr == "" {
		return nil, errors.New("turn: no listener set")
	}
	if cfg.TLSAddr != "" && cfg.Cert == nil {
		return nil, errors.New("turn-tls: needs turn-cert and turn-key")
	}
	if cfg.RelayBind == "" {
		cfg.RelayBind = "0.0.0.0"
		if cfg.RelayIP.To4() == nil {
			cfg.RelayBind = "::"
		}
	}
	if cfg.Realm == "" {
		cfg.Realm = "livegate"
	}
	if cfg.AllocationsPerUser == 0 {
		cfg.AllocationsPerUser = DefaultAllocationsPerUser
	}
	if cfg.AllocationsPerIP == 0 {
		cfg.AllocationsPerIP = DefaultAllocationsPerIP
	}
	perm := pionturn.DefaultPermissionHandler
	if cfg.Allowed != nil {
		perm = func(_ net.Addr, ip net.IP) bool { return cfg.Allowed(ip) }
	}
	gen := func() pionturn.RelayAddressGenerator {
		g := &relayGen{RelayAddressGeneratorStatic: pionturn.RelayAddressGeneratorStatic{RelayAddress: cfg.RelayIP, Address: cfg.RelayBind},
			toLocal: map[string]net.IP{}, toPublic: map[string]net.IP{}, ports: cfg.Ports}
		for pub, local := range cfg.Mapped {
			if p := net.ParseIP(pub); p != nil {
				g.toLocal[p.String()] = local
				g.toPublic[local.String()] = p
			}
		}
		return g
	}
	s := &Server{}
	sc := pionturn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   pionturn.LongTermTURNRESTAuthHandler(cfg.Secret, rtc.PionLoggerFactory(cfg.Logger).NewLogger("turn")),
		LoggerFactory: rtc.PionLoggerFactory(cfg.Logger),
	}
	newQuota(cfg.AllocationsPerUser, cfg.AllocationsPerIP, cfg.Logger).install(&sc)
	var err error
	if cfg.UDPAddr != "" {
		if s.udp, err = net.ListenPacket("udp", cfg.UDPAddr); err != nil {
			return nil, fmt.Errorf("turn-udp: %w", err)
		}
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn: s.udp, RelayAddressGenerator: gen(), PermissionHandler: perm})
	}
	if cfg.TCPAddr != "" {
		if s.tcp, err = net.Listen("tcp", cfg.TCPAddr); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("turn-tcp: %w", err)
		}
		sc.ListenerConfigs = append(sc.ListenerConfigs, pionturn.ListenerConfig{
			Listener: s.tcp, RelayAddressGenerator: gen(), PermissionHandler: perm})
	}
	if cfg.TLSAddr != "" {
		if s.tls, err = tls.Listen("tcp", cfg.TLSAddr, &tls.Config{
			Certificates: []tls.Certificate{*cfg.Cert}, MinVersion: tls.VersionTLS12}); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("turn-tls: %w", err)
		}
		sc.ListenerConfigs = append(sc.ListenerConfigs, pionturn.ListenerConfig{
			Listener: s.tls, RelayAddressGenerator: gen(), PermissionHandler: perm})
	}
	if s.srv, err = pionturn.NewServer(sc); err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("turn: %w", err)
	}
	return s, nil
}

func (s *Server) closeListeners() {
	for _, c := range []interface{ Close() error }{s.udp, s.tcp, s.tls} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// Addrs are the bound listener addresses; nil for those that are off.
func (s *Server) Addrs() (udp, tcp, tlsAddr net.Addr) {
	if s.udp != nil {
		udp = s.udp.LocalAddr()
	}
	if s.tcp != nil {
		tcp = s.tcp.Addr()
	}
	if s.tls != nil {
		tlsAddr = s.tls.Addr()
	}
	return udp, tcp, tlsAddr
}

// Allocations is the number of open relay allocations.
func (s *Server) Allocations() int { return s.srv.AllocationCount() }

// Close ends every allocation and releases the ports.
func (s *Server) Close() error { return s.srv.Close() }

// relayGen hands out relay sockets on which packets to a mapped address
// (a PUBLIC/LOCAL pair of --webrtc-ips) go to its local twin instead, and
// come back as from the public one: behind a cloud's 1:1 NAT a packet to
// the machine's own public address does not always come back in.
type relayGen struct {
	pionturn.RelayAddressGeneratorStatic
	toLocal  map[string]net.IP // public -> local
	toPublic map[string]net.IP // local -> public
	ports    []int             // peer ports relayed to; empty: any
}

// errNoTCPRelay refuses TCP allocations (RFC 6062). WebRTC relays media
// over UDP allocations only, and the permission check sees the peer's IP
// and not its port: a TCP relay would let any holder of credentials (the
// /check page hands them out without a token) connect to every TCP
// service on the media addresses, such as a Redis or admin port.
var errNoTCPRelay = errors.New("turn: TCP relays are not offered")

// AllocateListener refuses TCP allocations (see errNoTCPRelay).
func (g *relayGen) AllocateListener(pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

// AllocateConn refuses outgoing TCP relay connections (see errNoTCPRelay).
func (g *relayGen) AllocateConn(pionturn.AllocateConnConfig) (net.Conn, error) {
	return nil, errNoTCPRelay
}

func (g *relayGen) AllocatePacketConn(c pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	conn, addr, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil || (len(g.toLocal) == 0 && len(g.ports) == 0) {
		return conn, addr, err
	}
	return &mappedConn{PacketConn: conn, g: g}, addr, nil
}

type mappedConn struct {
	net.PacketConn
	g *relayGen
}

func (m *mappedConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if u, ok := addr.(*net.UDPAddr); ok {
		if len(m.g.ports) > 0 && !slices.Contains(m.g.ports, u.Port) {
			// Dropped as a firewall would: the client sees no answer.
			return len(p), nil
		}
		if ip, ok := m.g.toLocal[u.IP.String()]; ok {
			addr = &net.UDPAddr{IP: ip, Port: u.Port}
		}
	}
	return m.PacketConn.WriteTo(p, addr)
}

func (m *mappedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := m.PacketConn.ReadFrom(p)
	if u, ok := addr.(*net.UDPAddr); ok {
		if ip, ok := m.g.toPublic[u.IP.String()]; ok {
			addr = &net.UDPAddr{IP: ip, Port: u.Port}
		}
	}
	return n, addr, err
}
