// Package rtc is the WebRTC plumbing shared by WHIP ingest, WHEP egress and
// relay links: one pion API per role on a single UDP port, SDP offer checks,
// and WHIP/WHEP session resources (trickle ICE, ICE restart, teardown).
package rtc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtc/lite"
)

// Config configures the WebRTC engine.
type Config struct {
	// UDPAddr is the one UDP address all WebRTC media uses (e.g. ":8189");
	// empty: no UDP candidates.
	UDPAddr string
	// TCPAddr is the one TCP address for ICE-TCP (RFC 6544, passive) of
	// every session; empty: no TCP candidates. Networks that drop UDP
	// (offices, hotels) reach media through it.
	TCPAddr string
	// TCPConnsPerIP bounds the ICE-TCP connections one client address
	// (IPv6: /64) holds at once; 0: DefaultTCPConnsPerIP.
	TCPConnsPerIP int
	// IPs are advertised as host candidates instead of the interface
	// addresses (a public IP behind 1:1 NAT; 127.0.0.1 in tests). An entry
	// PUBLIC/LOCAL replaces only the interface address LOCAL.
	IPs []string
	// IncludeLoopback advertises loopback addresses when no IPs are given.
	IncludeLoopback bool
	// STUNServers are queried for server-reflexive candidates; none by default.
	STUNServers []string
	// ICEDisconnectedTimeout, ICEFailedTimeout and ICEKeepalive tune how
	// fast a vanished peer is noticed.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
	ICEKeepalive           time.Duration
	// LiteViewers puts WHEP viewers on livegate's own transport (package
	// lite) instead of pion PeerConnections: it takes their packets from
	// the shared UDP socket (and their ICE-TCP connections) before pion's
	// muxes see them.
	LiteViewers bool
	Logger      *slog.Logger
	// activeTCP lets sessions dial the peer's passive TCP candidates: only
	// relay links, which dial their parent. Sessions of clients never do,
	// or an offer could make the gateway open TCP connections to any
	// address, its own network's services included.
	activeTCP bool
}

// Engine creates PeerConnections for publishers and readers. Both share the
// one UDP socket; they differ in the interceptors they run.
type Engine struct {
	conn      net.PacketConn // nil without UDP
	mux       *ice.UDPMuxDefault
	tcp       net.Listener // nil without ICE-TCP
	tcpMux    *ice.TCPMuxDefault
	lite      *lite.Transport // nil unless cfg.LiteViewers
	publisher *webrtc.API
	// simulcast is the publisher API with the header extensions that tag
	// simulcast layers. Only offers with simulcast use it, so the answers
	// to every other publisher stay exactly as they were.
	simulcast *webrtc.API
	reader    *webrtc.API
	ice       []webrtc.ICEServer
	log       *slog.Logger
	cfg       Config
}

// NewEngine listens on cfg.UDPAddr and prepares the APIs.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ICEDisconnectedTimeout == 0 {
		cfg.ICEDisconnectedTimeout = 3 * time.Second
	}
	if cfg.ICEFailedTimeout == 0 {
		cfg.ICEFailedTimeout = 8 * time.Second
	}
	if cfg.ICEKeepalive == 0 {
		cfg.ICEKeepalive = time.Second
	}
	if err := CheckIPs(cfg.IPs); err != nil {
		return nil, err
	}
	if cfg.UDPAddr == "" && cfg.TCPAddr == "" {
		return nil, errors.New("webrtc: neither UDP nor TCP media is on")
	}
	e := &Engine{log: cfg.Logger, cfg: cfg}
	var err error
	if cfg.UDPAddr != "" {
		addr, err := net.ResolveUDPAddr("udp", cfg.UDPAddr)
		if err != nil {
			return nil, fmt.Errorf("webrtc-udp %q: %w", cfg.UDPAddr, err)
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("webrtc-udp: %w", err)
		}
		// Large socket buffers absorb bursts (GOP cache, many viewers) that the
		// default 208 KB would drop. Errors only mean the kernel caps them.
		_ = conn.SetReadBuffer(4 << 20)
		_ = conn.SetWriteBuffer(4 << 20)
		e.conn = conn
		var forPion net.PacketConn = conn
		if cfg.LiteViewers {
			if e.lite, err = lite.New(lite.Params{Conn: conn, Logger: cfg.Logger,
				ConsentTimeout: cfg.ICEDisconnectedTimeout + cfg.ICEFailedTimeout}); err != nil {
				_ = conn.Close()
				return nil, err
			}
			forPion = e.lite.PacketConn()
		}
		e.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: forPion})
	}
	if cfg.TCPAddr != "" {
		ln, err := net.Listen("tcp", cfg.TCPAddr)
		if err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("webrtc-tcp: %w", err)
		}
		e.tcp = ln
		if cfg.TCPConnsPerIP <= 0 {
			cfg.TCPConnsPerIP = DefaultTCPConnsPerIP
		}
		ln = limitPerAddr(ln, cfg.TCPConnsPerIP, cfg.Logger)
		if e.lite != nil {
			// Lite viewers' connections are kept; the rest reach pion.
			ln = e.lite.WrapTCP(ln)
		}
		e.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener: ln, Logger: iceLogger(cfg.Logger),
			// Each session's TCP connection buffers at most this much
			// media toward a slow peer; beyond, packets are dropped as
			// on a full UDP socket, so a viewer never blocks the fan-out.
			ReadBufferSize: 256, WriteBufferSize: 512 << 10,
			// A connection that sends no STUN request soon is no ICE peer.
			FirstStunBindTimeout: 10 * time.Second,
		})
	}
	for _, u := range cfg.STUNServers {
		e.ice = append(e.ice, webrtc.ICEServer{URLs: []string{u}})
	}
	if e.publisher, err = e.newAPI(cfg, true, false); err != nil {
		_ = e.Close()
		return nil, err
	}
	if e.simulcast, err = e.newAPI(cfg, true, true); err != nil {
		_ = e.Close()
		return nil, err
	}
	if e.reader, err = e.newAPI(cfg, false, false); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Engine) newAPI(cfg Config, publisher, simulcast bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, err
	}
	if simulcast {
		if err := registerSimulcastExtensions(m); err != nil {
			return nil, err
		}
	}
	reg := &interceptor.Registry{}
	if publisher {
		// Toward publishers we ask for retransmissions, send receiver
		// reports and transport-wide feedback so browsers can ramp up
		// their bitrate. Readers get none of this per-viewer machinery:
		// NACKs are answered from the shared history in the relay.
		// A packet the publisher does not resend after a few requests is
		// gone: asking forever only wastes its uplink.
		if err := webrtc.ConfigureNackWithOptions(m, reg,
			[]nack.GeneratorOption{nack.GeneratorMaxNacksPerPacket(10)}); err != nil {
			return nil, err
		}
		if err := webrtc.ConfigureRTCPReports(reg); err != nil {
			return nil, err
		}
		if err := webrtc.ConfigureTWCCSender(m, reg); err != nil {
			return nil, err
		}
	}

	s := webrtc.SettingEngine{}
	var networks []webrtc.NetworkType
	if e.mux != nil {
		s.SetICEUDPMux(e.mux)
		networks = append(networks, webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6)
	}
	if e.tcpMux != nil {
		// Passive candidates on the shared port; as a relay link's client,
		// pion also dials a parent's passive TCP candidates.
		s.SetICETCPMux(e.tcpMux)
		s.DisableActiveTCP(!cfg.activeTCP)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetNetworkTypes(networks)
	s.SetICETimeouts(cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout, cfg.ICEKeepalive)
	s.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	// Accept packets up to 1024 behind the newest, as browsers do. pion's
	// default of 64 discards retransmissions that the NACK generator (which
	// asks for anything missing among the last 512) requested: at a few
	// hundred packets a second, or after a short link cut, it then asks for
	// the same packets every 100 ms until they leave its window, and the
	// publisher resends them every time for nothing.
	s.SetSRTPReplayProtectionWindow(1024)
	s.SetIncludeLoopbackCandidate(cfg.IncludeLoopback || len(cfg.IPs) > 0)
	if rules := rewriteRules(cfg.IPs); len(rules) > 0 {
		if err := s.SetICEAddressRewriteRules(rules...); err != nil {
			return nil, fmt.Errorf("webrtc-ips: %w", err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(s)), nil
}

// NewPublisherPC returns a PeerConnection for receiving a publisher's media.
func (e *Engine) NewPublisherPC() (*webrtc.PeerConnection, error) {
	return e.publisher.NewPeerConnection(webrtc.Configuration{ICEServers: e.ice})
}

// NewSimulcastPublisherPC returns a PeerConnection for a publisher whose
// offer has simulcast video: it also negotiates the mid, rid and
// repaired-rid header extensions, without which a browser rejects the
// answer and pion cannot tell the layers apart.
func (e *Engine) NewSimulcastPublisherPC() (*webrtc.PeerConnection, error) {
	return e.simulcast.NewPeerConnection(webrtc.Configuration{ICEServers: e.ice})
}

// registerSimulcastExtensions registers the header extensions of RFC 8852
// (rid, repaired rid) and RFC 8843 (mid) that simulcast needs.
func registerSimulcastExtensions(m *webrtc.MediaEngine) error {
	for _, ext := range []struct {
		uri   string
		kinds []webrtc.RTPCodecType
	}{
		{ExtMid, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}},
		{ExtRID, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{ExtRepairedRID, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
	} {
		for _, k := range ext.kinds {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: ext.uri}, k); err != nil {
				return fmt.Errorf("register header extension %s: %w", ext.uri, err)
			}
		}
	}
	return nil
}

// IngestAPI is the API for PeerConnections that receive media (publishers,
// and relay links pulling from a parent): NACKs, receiver reports and
// transport-wide feedback, on the shared UDP port.
func (e *Engine) IngestAPI() *webrtc.API { return e.publisher }

// NewReaderPC returns a PeerConnection for sending media to a reader.
func (e *Engine) NewReaderPC() (*webrtc.PeerConnection, error) {
	return e.reader.NewPeerConnection(webrtc.Configuration{ICEServers: e.ice})
}

// LocalAddr is the UDP address media is received on; nil without UDP.
func (e *Engine) LocalAddr() net.Addr {
	if e.conn == nil {
		return nil
	}
	return e.conn.LocalAddr()
}

// TCPAddr is the ICE-TCP address; nil without ICE-TCP.
func (e *Engine) TCPAddr() net.Addr {
	if e.tcp == nil {
		return nil
	}
	return e.tcp.Addr()
}

// Close releases the media ports. PeerConnections should be closed first.
func (e *Engine) Close() error {
	var errs []error
	if e.lite != nil {
		e.lite.Close()
	}
	if e.mux != nil {
		errs = append(errs, e.mux.Close(), e.conn.Close())
	}
	if e.tcpMux != nil {
		// The mux closes its listener.
		errs = append(errs, e.tcpMux.Close())
	}
	return errors.Join(errs...)
}

// rewriteRules replaces host candidate addresses: plain IPs replace every
// interface address, a PUBLIC/LOCAL pair only LOCAL.
func rewriteRules(ips []string) []webrtc.ICEAddressRewriteRule {
	var rules []webrtc.ICEAddressRewriteRule
	var plain []string
	for _, ip := range ips {
		pub, local, pair := strings.Cut(ip, "/")
		if !pair {
			plain = append(plain, pub)
			continue
		}
		rules = append(rules, webrtc.ICEAddressRewriteRule{External: []string{pub}, Local: local,
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace})
	}
	if len(plain) > 0 {
		rules = append(rules, webrtc.ICEAddressRewriteRule{External: plain,
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace})
	}
	return rules
}

// CheckIPs validates advertised addresses: IP or PUBLIC/LOCAL (1:1 NAT).
func CheckIPs(ips []string) error {
	for _, ip := range ips {
		pub, local, pair := strings.Cut(ip, "/")
		if net.ParseIP(pub) == nil || (pair && net.ParseIP(local) == nil) {
			return fmt.Errorf("webrtc-ips: %q is not an IP address or PUBLIC/LOCAL pair of IP addresses", ip)
		}
	}
	return nil
}

var feedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"}, {Type: webrtc.TypeRTCPFBGoogREMB},
}

// h264Profiles are registered so that pion's own offers (relay links) list
// the common profiles. They do not decide what is accepted: choose.go does,
// by RFC 6184 profile, and pion is handed offers reduced to that choice.
var h264Profiles = []string{"42e01f", "42001f", "4d001f", "64001f", "640c1f", "f4001f"}

func registerCodecs(m *webrtc.MediaEngine) error {
	pt := webrtc.PayloadType(96)
	video := []webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
		{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=2"},
		{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000},
	}
	for _, p := range h264Profiles {
		video = append(video, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + p})
	}
	for _, c := range video {
		c.RTCPFeedback = feedback
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: c, PayloadType: pt}, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("register %s: %w", c.MimeType, err)
		}
		pt++
	}
	return m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio)
}
