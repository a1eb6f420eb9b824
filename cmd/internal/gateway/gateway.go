// Package gateway assembles livegate from its parts: the relay core, the
// WebRTC engine, the protocol adapters and the HTTP server. cmd/livegate
// and the tests start it the same way.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livegate/livegate/egress/composite"
	"github.com/livegate/livegate/egress/hls"
	egressrtmp "github.com/livegate/livegate/egress/rtmp"
	"github.com/livegate/livegate/egress/whep"
	ingestrtmp "github.com/livegate/livegate/ingest/rtmp"
	ingestrtsp "github.com/livegate/livegate/ingest/rtsp"
	"github.com/livegate/livegate/ingest/whip"
	"github.com/livegate/livegate/recorder"
	"github.com/livegate/livegate/recorder/storage"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/tree"
	"github.com/livegate/livegate/relay/turn"
	"github.com/livegate/livegate/web"
	"github.com/livegate/livegate/web/auth"
	"github.com/livegate/livegate/web/metrics"
	"github.com/livegate/livegate/web/rooms"
	"github.com/livegate/livegate/web/webhooks"
)

// Config is every setting of the gateway. cmd/livegate documents and fills
// it from flags, the YAML file and the environment.
type Config struct {
	HTTP      string
	WebRTCUDP string // "off": no UDP media
	// WebRTCTCP is the ICE-TCP address; empty: the same as WebRTCUDP
	// (another free port when that one is port 0); "off": none.
	WebRTCTCP string
	// WHEPTransport is how WHEP viewers are served: "lite" (or empty),
	// livegate's own transport; "pion", a PeerConnection each (fallback).
	WHEPTransport    string
	WebRTCIPs        []string // IP or PUBLIC/LOCAL; "auto": ask STUNServers at start
	STUNServers      []string
	ICE              ICEConfig // ICE-TCP aside: TURN, ICE servers for clients
	Grace            time.Duration
	KeyframeInterval time.Duration
	KeyframeWait     time.Duration
	VideoCodecs      []string
	MaxBody          int64
	MaxPublishers    int
	MaxViewers       int
	MaxViewersStream int
	MaxTracks        int
	ConnectTimeout   time.Duration
	CORSOrigin       string
	AuthMode         string   // auto, on, off (see web.AuthAuto...)
	AuthKey          string   // HS256 signing key, at least 32 bytes
	AuthPreviousKeys []string // still verify tokens (key rotation); drop one to revoke its tokens
	AdminKey         string
	OpenHosts        []string      // Host names besides localhost/loopback an open gateway answers
	TrustedProxies   []string      // CIDRs of reverse proxies whose X-Forwarded-For is believed
	RelayParents     []string      // pull streams this node lacks from these WHEP servers
	ClusterKey       string        // bearer key of relay links
	RelayLinger      time.Duration // keep a pull this long after its last viewer
	RelayDeadAfter   time.Duration // a relay link without media (or keepalive answers) this long is replaced (0: 500 ms)
	ClusterRedis     string        // redis://host:port/db: shared cluster directory; empty: in-memory (one node)
	ClusterRole      string        // origin or edge (default: edge with relay-parents, else origin)
	NodeID           string        // default: host name and public host:port
	PublicURL        string        // base URL other nodes and redirected viewers use (default: from HTTP)
	Workers          int
	ShutdownTimeout  time.Duration
	// Rooms: see cmd/livegate for their meaning.
	MaxRooms           int     // 0: unlimited
	MaxRoomSubscribers int     // room event streams per room; 0: unlimited
	ChatHistory        int     // 0: 100
	ChatRate           float64 // messages per second per identity and room; 0: unlimited
	ChatBurst          int     // 0: 5
	// KeyframeMaxInterval bounds the GOP while HLS, RTMP push, RTSP out or
	// a recording reads a stream (0: the publisher's own GOP).
	KeyframeMaxInterval time.Duration
	// Recording.
	RecordDir       string   // local storage (default ./data/recordings)
	RecordSpool     string   // spool for segments not yet stored (default ./data/spool)
	RecordSpoolMax  int64    // bytes waiting in the spool at most (0: unlimited)
	RecordRules     []string // path patterns recorded when they go live, e.g. "room/*"
	RecordSegment   time.Duration
	RecordRetention time.Duration // 0: keep
	RecordS3        storage.S3Config
	// Per-client limits.
	MaxSessionsPerIP        int
	PublishesPerMinute      int
	ViewsPerMinute          int
	EventStreamsPerID       int  // room event streams per identity (or address) and room
	CandidatesPerSess       int  // ICE candidates per session, offer and trickle (0: 50)
	RefusePrivateCandidates bool // drop ICE candidates with private, link-local and loopback addresses
	RTMPConnsPerIP          int  // concurrent RTMP connections per address (0: 8)
	// Bypass: LL-HLS and RTMP push.
	HLS           bool
	HLSIdle       time.Duration
	FFmpeg        string // for Opus->AAC; empty: from PATH; "-": none
	RTMPPushRules []string
	// Room composites: rooms matching a rule are mixed into ROOM/composite
	// while they have hosts; defaults for API requests and rules.
	CompositeRules  []string
	CompositeSize   string // WIDTHxHEIGHT (default 1280x720)
	CompositeFPS    int    // 0: 30
	CompositePreset string // x264 preset (default veryfast)
	// RTMP and RTSP ingest (and RTSP out); empty: off.
	RTMPAddr string
	RTSPAddr string
	// Webhooks.
	WebhookURLs   []string
	WebhookSecret string
}

// Gateway is a running livegate node.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	hub    *relay.Hub
	engine *rtc.Engine
	ips    []string // advertised media addresses, "auto" resolved
	turn   *turn.Server
	// turnSecret signs TURN credentials; links is what clients are handed.
	turnSecret string
	links      turn.ICEServers
	check      *selfTest
	whip       *whip.Server
	whep       *whep.Server
	rooms      *rooms.Manager
	rec        *recorder.Manager
	frames     *frames.Layer
	hls        *hls.Server
	push       *egressrtmp.Manager
	comp       *composite.Manager
	hooks      *webhooks.Notifier
	unhook     func()
	puller     *tree.Puller
	dir        cluster.Directory
	member     *cluster.Member
	rtmpIn     *ingestrtmp.Server
	rtsp       *ingestrtsp.Server
	policy     *auth.Policy
	web        *web.Server
	ln         net.Listener
	srv        *http.Server
}

// New binds the HTTP and UDP ports and wires the parts; Run serves.
func New(cfg Config, log *slog.Logger) (*Gateway, error) {
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 3 * time.Second
	}
	g := &Gateway{cfg: cfg, log: log}
	// The access configuration is checked before anything listens.
	var err error
	if g.policy, err = newPolicy(cfg); err != nil {
		return nil, err
	}
	proxies, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("trusted-proxies: %w", err)
	}
	g.hub = relay.NewHub(relay.Params{
		Grace:               cfg.Grace,
		KeyframeInterval:    cfg.KeyframeInterval,
		KeyframeWait:        cfg.KeyframeWait,
		KeyframeMaxInterval: cfg.KeyframeMaxInterval,
		Workers:             cfg.Workers,
		MaxViewersPerStream: cfg.MaxViewersStream,
		Logger:              log,
	})
	// From here on, a failure stops whatever New started: closeMedia
	// knows every part and skips those not made yet.
	ok := false
	defer func() {
		if !ok {
			if g.ln != nil {
				_ = g.ln.Close()
			}
			g.closeMedia()
		}
	}()
	g.hooks = webhooks.New(webhooks.Params{URLs: cfg.WebhookURLs, Secret: cfg.WebhookSecret, Logger: log})
	g.unhook = webhooks.FollowHub(g.hub, g.hooks)
	var st storage.Storage
	if cfg.RecordS3.Bucket != "" {
		st, err = storage.NewS3(context.Background(), cfg.RecordS3)
	} else {
		dir := cfg.RecordDir
		if dir == "" {
			dir = "./data/recordings"
		}
		st, err = storage.NewLocal(dir)
	}
	if err == nil {
		g.rec, err = recorder.New(recorder.Params{Hub: g.hub, Storage: st, SpoolDir: cfg.RecordSpool, SpoolMaxBytes: cfg.RecordSpoolMax,
			SegmentDuration: cfg.RecordSegment, Rules: cfg.RecordRules, Retention: cfg.RecordRetention, Logger: log,
			OnComplete: func(in recorder.Info) { g.hooks.Send(webhooks.RecordingFinished, in) }})
	}
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	var pushRules []egressrtmp.Rule
	for _, r := range cfg.RTMPPushRules {
		rule, err := egressrtmp.ParseRule(r)
		if err != nil {
			return nil, err
		}
		pushRules = append(pushRules, rule)
	}
	g.frames = frames.New(frames.Params{Logger: log})
	// One Opus->AAC transcoder per stream for RTMP push and HLS together.
	transcoders := aac.New(aac.Params{Frames: g.frames, FFmpeg: cfg.FFmpeg, Logger: log})
	g.push = egressrtmp.New(egressrtmp.Params{Hub: g.hub, Frames: g.frames, AAC: transcoders, Rules: pushRules, Logger: log,
		OnFailure: func(in egressrtmp.Info, retrying bool) {
			g.hooks.Send(webhooks.EgressFailed, map[string]any{"job": in, "retrying": retrying})
		}})
	if err := g.startComposite(cfg, log); err != nil {
		g.closeMedia()
		return nil, err
	}
	var hlsSrv web.HLSServer // stays a nil interface when HLS is off
	if cfg.HLS {
		g.hls = hls.New(hls.Params{Hub: g.hub, Frames: g.frames, AAC: transcoders, IdleTimeout: cfg.HLSIdle,
			TargetDuration: cfg.KeyframeMaxInterval, Logger: log})
		hlsSrv = g.hls
	}
	udpAddr, tcpAddr, err := mediaAddrs(cfg.WebRTCUDP, cfg.WebRTCTCP)
	if err != nil {
		return nil, err
	}
	if g.ips, err = resolveIPs(context.Background(), cfg.WebRTCIPs, cfg.STUNServers, log); err != nil {
		return nil, err
	}
	if t := cfg.WHEPTransport; t != "" && t != "lite" && t != "pion" {
		return nil, fmt.Errorf("whep-transport %q: use lite or pion", t)
	}
	g.engine, err = rtc.NewEngine(rtc.Config{
		UDPAddr: udpAddr, TCPAddr: tcpAddr, IPs: g.ips, STUNServers: cfg.STUNServers, Logger: log,
		// Without configured IPs, also offer loopback so a browser on the
		// same machine connects even when it has no other interface.
		IncludeLoopback: len(cfg.WebRTCIPs) == 0,
		LiteViewers:     cfg.WHEPTransport != "pion",
	})
	if err != nil {
		return nil, err
	}
	if g.turnSecret = cfg.ICE.TURNSecret; g.turnSecret == "" {
		g.turnSecret = randomSecret()
	}
	if err := g.startTURN(cfg); err != nil {
		return nil, err
	}
	if g.links, err = g.iceServers(cfg); err != nil {
		return nil, err
	}
	g.check = newSelfTest(g.engine)
	g.whip = whip.New(whip.Params{Engine: g.engine, Hub: g.hub, VideoCodecs: cfg.VideoCodecs,
		MaxTracks: cfg.MaxTracks, MaxSessions: cfg.MaxPublishers, ConnectTimeout: cfg.ConnectTimeout, Logger: log})
	var pull func(context.Context, string) error
	if cfg.ClusterRedis != "" {
		if g.dir, err = cluster.NewRedis(cfg.ClusterRedis, cluster.RedisOptions{}); err != nil {
			return nil, err
		}
	} else {
		g.dir = cluster.NewMemory()
	}
	if len(cfg.RelayParents) > 0 || cfg.ClusterRedis != "" {
		// g.member is set below, before any request is served.
		locate := func(ctx context.Context, path string) ([]string, error) { return g.member.Parents(ctx, path) }
		dead := cfg.RelayDeadAfter
		if dead <= 0 {
			dead = tree.DefaultParams().DeadAfter
		}
		relayAPI, err := g.engine.RelayAPI(dead/5, dead)
		if err != nil {
			return nil, err
		}
		g.puller = tree.New(tree.Params{Hub: g.hub, Parents: cfg.RelayParents, Locate: locate, Linger: cfg.RelayLinger, Logger: log,
			DeadAfter: dead,
			Client: rtcclient.Options{API: relayAPI, Token: cfg.ClusterKey,
				// A relay link never follows a redirect: the cluster key
				// goes to the configured parents only.
				HTTP: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
					return http.ErrUseLastResponse
				}}}})
		pull = g.puller.Ensure
	}
	g.whep = whep.New(whep.Params{Engine: g.engine, Hub: g.hub, Pull: pull,
		MaxTracks: cfg.MaxTracks, MaxSessions: cfg.MaxViewers, ConnectTimeout: cfg.ConnectTimeout, Logger: log})
	if err := g.startIngest(cfg, log); err != nil {
		return nil, err
	}
	g.rooms = rooms.New(rooms.Params{MaxRooms: cfg.MaxRooms, MaxSubscribers: cfg.MaxRoomSubscribers,
		History: cfg.ChatHistory, ChatRate: cfg.ChatRate, ChatBurst: cfg.ChatBurst, Logger: log})
	// A composite's output is a stream of its room but not a host.
	g.hub.Subscribe(func(e relay.Event) {
		if !g.comp.IsOutput(e.Path) {
			g.rooms.HandleEvent(e)
		}
	})
	mx := metrics.New(metrics.Source{
		Streams: func() []relay.StreamStats {
			var out []relay.StreamStats
			for _, s := range g.hub.Streams() {
				out = append(out, s.Stats())
			}
			return out
		},
		Publishers: g.whip.Sessions,
		Viewers:    g.whep.Sessions,
		RelayLinks: func() int {
			if g.puller == nil {
				return 0
			}
			return len(g.puller.Links())
		},
		RefusedSections: func(f func(direction, kind, reason string, n uint64)) {
			g.whip.RefusedSections(func(k, r string, n uint64) { f("whip", k, r, n) })
			g.whep.RefusedSections(func(k, r string, n uint64) { f("whep", k, r, n) })
		},
		Extra: g.collectors(),
	})
	g.ln, err = net.Listen("tcp", g.listenAddr("http", cfg.HTTP))
	if err != nil {
		return nil, fmt.Errorf("http %q: %w", cfg.HTTP, err)
	}
	if err := g.joinCluster(); err != nil {
		return nil, err
	}
	g.web = web.New(web.Params{WHIP: g.whip, WHEP: g.whep, Hub: g.hub, Rooms: g.rooms, Cluster: g.member, MaxBody: cfg.MaxBody,
		Recordings: g.rec, Metrics: mx, RelayParent: g.relayParent,
		Limits: web.Limits{SessionsPerIP: cfg.MaxSessionsPerIP, PublishesPerMinute: cfg.PublishesPerMinute,
			ViewsPerMinute: cfg.ViewsPerMinute, EventStreamsPerIdentity: cfg.EventStreamsPerID,
			CandidatesPerSession: cfg.CandidatesPerSess, RefusePrivateCandidates: cfg.RefusePrivateCandidates},
		CORSOrigin: cfg.CORSOrigin, Logger: log, Policy: g.policy, TrustedProxies: proxies,
		ICEServers: g.linkHeaders, SelfTest: g.check})
	g.web.RegisterBypass(hlsSrv, g.push)
	g.web.RegisterComposite(g.comp, g.push)

	if err := g.checkAuth(); err != nil {
		return nil, err
	}
	g.srv = &http.Server{
		Handler:           g.web.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Room event streams never end by themselves: end them when shutdown
	// starts so that it does not wait for them.
	g.srv.RegisterOnShutdown(g.rooms.Close)
	if g.hls != nil {
		g.srv.RegisterOnShutdown(g.hls.Close)
	}
	ok = true
	return g, nil
}

// joinCluster registers this node in the directory: it heartbeats from
// now on and leaves when the media parts close.
func (g *Gateway) joinCluster() error {
	cfg := g.cfg
	url := cfg.PublicURL
	if url == "" {
		url = cluster.DefaultURL(g.ln.Addr().String())
	}
	role := cluster.Role(cfg.ClusterRole)
	if role == "" {
		role = cluster.RoleOrigin
		if len(cfg.RelayParents) > 0 {
			role = cluster.RoleEdge
		}
	}
	relayed := func(string) bool { return false }
	if g.puller != nil {
		relayed = g.puller.Relaying
	}
	var err error
	g.member, err = cluster.NewMember(cluster.MemberParams{Directory: g.dir, Hub: g.hub, URL: url, ID: cfg.NodeID, Role: role,
		Load:    cluster.HubLoad(g.hub, g.whep.Sessions, cfg.MaxViewers),
		Viewers: func() int64 { return int64(g.whep.Sessions()) }, MaxViewers: cfg.MaxViewers,
		Relayed: relayed, Logger: g.log})
	if err != nil {
		return err
	}
	g.member.Start()
	return nil
}

// collectors export the counters of the parts outside the relay.
func (g *Gateway) collectors() []prometheus.Collector {
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "livegate", Name: name, Help: help, ConstLabels: labels}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "livegate", Name: name, Help: help}, f)
	}
	const hookHelp = "Webhook events by outcome: delivered, failed (attempts exhausted) or dropped (queue full)."
	out := []prometheus.Collector{
		counter("webhook_events_total", hookHelp, prometheus.Labels{"result": "delivered"}, func() float64 { return float64(g.hooks.Delivered.Load()) }),
		counter("webhook_events_total", hookHelp, prometheus.Labels{"result": "failed"}, func() float64 { return float64(g.hooks.Failed.Load()) }),
		counter("webhook_events_total", hookHelp, prometheus.Labels{"result": "dropped"}, func() float64 { return float64(g.hooks.Dropped.Load()) }),
		counter("recorder_spool_errors_total", "Segment writes to the recording spool that failed (disk full, record-spool-max, I/O errors).", nil,
			func() float64 { return float64(g.rec.SpoolErrors()) }),
		gauge("recorder_spool_bytes", "Bytes of recording files waiting in the spool for upload.", func() float64 { return float64(g.rec.SpoolBytes()) }),
	}
	if g.rtmpIn != nil {
		out = append(out, gauge("rtmp_connections", "Open RTMP ingest connections.", func() float64 { return float64(g.rtmpIn.Conns()) }))
	}
	if g.rtsp != nil {
		out = append(out, gauge("rtsp_sessions", "Open RTSP sessions (publishers and players).", func() float64 { return float64(g.rtsp.Sessions()) }))
	}
	return out
}

// newPolicy builds and validates the access policy of cfg.
func newPolicy(cfg Config) (*auth.Policy, error) {
	prev := make([][]byte, len(cfg.AuthPreviousKeys))
	for i, k := range cfg.AuthPreviousKeys {
		prev[i] = []byte(k)
	}
	var key []byte
	if cfg.AuthKey != "" {
		key = []byte(cfg.AuthKey)
	}
	return auth.NewPolicy(auth.PolicyConfig{Mode: auth.Mode(cfg.AuthMode), Key: key, PreviousKeys: prev,
		AdminKey: cfg.AdminKey, ClusterKey: cfg.ClusterKey, OpenHosts: cfg.OpenHosts})
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// checkAuth refuses listeners an open gateway would expose and says
// loudly how open the gateway is.
func (g *Gateway) checkAuth() error {
	if err := g.policy.CheckListener("http", g.ln.Addr()); err != nil {
		return err
	}
	switch {
	case g.policy.Mode() == auth.ModeOff:
		g.log.Warn("AUTH IS OFF: clients on this machine can publish, watch and administer without a token", "http", g.ln.Addr().String())
	case g.policy.Open():
		g.log.Warn("NO AUTH KEY: publishing and watching are open to clients on this machine only; " +
			"set --auth-key (LIVEGATE_AUTH_KEY) so others can use tokens")
	}
	return nil
}

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

// HTTPAddr is the bound HTTP address (useful with port 0).
func (g *Gateway) HTTPAddr() string { return g.ln.Addr().String() }

// UDPAddr is the bound WebRTC media address (nil with UDP off).
func (g *Gateway) UDPAddr() net.Addr { return g.engine.LocalAddr() }

// TCPAddr is the bound ICE-TCP address (nil with ICE-TCP off).
func (g *Gateway) TCPAddr() net.Addr { return g.engine.TCPAddr() }

// Puller is the relay-tree puller, nil without parents.
func (g *Gateway) Puller() *tree.Puller { return g.puller }

// Member is this node's cluster membership.
func (g *Gateway) Member() *cluster.Member { return g.member }

// Hub is the relay core, for tests and embedding.
func (g *Gateway) Hub() *relay.Hub { return g.hub }

// Run serves until ctx is cancelled, then shuts down: it stops accepting
// requests, ends every session cleanly (DTLS close, so peers notice at
// once) and releases the ports.
func (g *Gateway) Run(ctx context.Context) error {
	g.log.Info("livegate listening", "http", g.HTTPAddr())
	g.logMedia()
	errc := make(chan error, 1)
	go func() { errc <- g.srv.Serve(g.ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	g.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := g.srv.Shutdown(sctx); err != nil {
		_ = g.srv.Close()
	}
	if serveErr == nil {
		serveErr = <-errc
	}
	g.closeMedia()
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return serveErr
}

func (g *Gateway) closeMedia() {
	// Recordings write their last segment while the streams still exist.
	if g.rec != nil {
		g.rec.Close()
	}
	// Composites end before the hub: their output stream ends cleanly.
	if g.comp != nil {
		g.comp.Close()
	}
	if g.unhook != nil {
		g.unhook()
	}
	if g.hooks != nil {
		defer g.hooks.Close()
	}
	if g.rooms != nil {
		g.rooms.Close()
	}
	if g.whip != nil {
		g.whip.Close()
	}
	if g.rtmpIn != nil {
		g.rtmpIn.Close()
	}
	if g.rtsp != nil {
		g.rtsp.Close()
	}
	if g.puller != nil {
		g.puller.Close()
	}
	if g.member != nil {
		g.member.Close()
	}
	if g.dir != nil {
		_ = g.dir.Close()
	}
	if g.whep != nil {
		g.whep.Close()
	}
	if g.push != nil {
		g.push.Close()
	}
	if g.hls != nil {
		g.hls.Close()
	}
	g.hub.Close()
	if g.check != nil {
		g.check.Close()
	}
	if g.turn != nil {
		_ = g.turn.Close()
	}
	if g.engine != nil {
		_ = g.engine.Close()
	}
}

func (g *Gateway) relayParent(path string) (string, bool) {
	if g.puller == nil {
		return "", false
	}
	for _, l := range g.puller.Links() {
		if l.Path == path {
			return l.Parent, true
		}
	}
	return "", false
}
