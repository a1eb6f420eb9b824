// Package gateway assembles livegate from its parts: the relay core, the
// WebRTC engine, the protocol adapters and the HTTP server. cmd/livegate
// and the tests start it the same way.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

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
	"github.com/livegate/livegate/web/rooms"
	"github.com/livegate/livegate/web/webhooks"
)

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
	puller     *tree.Puller
	dir        cluster.Directory
	member     *cluster.Member
	rtmpIn     *ingestrtmp.Server
	rtsp       *ingestrtsp.Server
	policy     *auth.Policy
	web        *web.Server
	ln         net.Listener
	srv        *http.Server
	// stack stops the parts, latest first (see New and closeMedia).
	stack cleanup
}

// New checks cfg, binds the HTTP and media ports and wires the parts; Run
// serves. A part is stopped by the closer pushed when it started: if New
// fails, those started so far stop, latest first.
func New(cfg Config, log *slog.Logger) (_ *Gateway, err error) {
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultConfig().ShutdownTimeout
	}
	g := &Gateway{cfg: cfg, log: log}
	// The settings are checked before anything starts or listens.
	if g.policy, err = newPolicy(cfg); err != nil {
		return nil, err
	}
	proxies, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("trusted-proxies: %w", err)
	}
	if t := cfg.WHEPTransport; t != "" && t != "lite" && t != "pion" {
		return nil, fmt.Errorf("whep-transport %q: use lite or pion", t)
	}
	udpAddr, tcpAddr, err := mediaAddrs(cfg.WebRTCUDP, cfg.WebRTCTCP)
	if err != nil {
		return nil, err
	}
	var pushRules []egressrtmp.Rule
	for _, r := range cfg.RTMPPushRules {
		rule, err := egressrtmp.ParseRule(r)
		if err != nil {
			return nil, err
		}
		pushRules = append(pushRules, rule)
	}
	defer func() {
		if err != nil {
			g.closeMedia()
		}
	}()

	rp := cfg.RelayParams
	rp.Logger = log
	g.hub = relay.NewHub(rp)
	g.stack.push(g.hub.Close)
	hp := cfg.WebhookParams
	hp.Logger = log
	g.hooks = webhooks.New(hp)
	g.stack.push(g.hooks.Close)
	g.stack.push(webhooks.FollowHub(g.hub, g.hooks))
	if err := g.startRecorder(cfg, log); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	g.frames = frames.New(frames.Params{Logger: log})
	// One Opus->AAC transcoder per stream for RTMP push and HLS together.
	transcoders := aac.New(aac.Params{Frames: g.frames, FFmpeg: cfg.FFmpeg, Logger: log})
	g.push = egressrtmp.New(egressrtmp.Params{Hub: g.hub, Frames: g.frames, AAC: transcoders, Rules: pushRules, Logger: log,
		OnFailure: func(in egressrtmp.Info, retrying bool) {
			g.hooks.Send(webhooks.EgressFailed, map[string]any{"job": in, "retrying": retrying})
		}})
	g.stack.push(g.push.Close)
	if err := g.startComposite(cfg, log); err != nil {
		return nil, err
	}
	var hlsSrv web.HLSServer // stays a nil interface when HLS is off
	if cfg.HLS {
		p := cfg.HLSParams
		p.Hub, p.Frames, p.AAC, p.Logger = g.hub, g.frames, transcoders, log
		p.TargetDuration = cfg.KeyframeMaxInterval
		g.hls = hls.New(p)
		g.stack.push(g.hls.Close)
		hlsSrv = g.hls
	}
	if g.ips, err = resolveIPs(context.Background(), cfg.WebRTCIPs, cfg.STUNServers, log); err != nil {
		return nil, err
	}
	g.engine, err = rtc.NewEngine(rtc.Config{
		UDPAddr: udpAddr, TCPAddr: tcpAddr, IPs: g.ips, STUNServers: cfg.STUNServers, Logger: log,
		TCPConnsPerIP: cfg.WebRTCTCPConnsPerIP,
		// Without configured IPs, also offer loopback so a browser on the
		// same machine connects even when it has no other interface.
		IncludeLoopback: len(cfg.WebRTCIPs) == 0,
		LiteViewers:     cfg.WHEPTransport != "pion",
	})
	if err != nil {
		return nil, err
	}
	g.stack.push(func() { _ = g.engine.Close() })
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
	g.stack.push(g.check.Close)
	// max-tracks and connect-timeout are one setting for WHIP and WHEP.
	sp := rtc.SessionParams{Engine: g.engine, MaxTracks: cfg.MaxTracks, ConnectTimeout: cfg.ConnectTimeout, Logger: log}
	wp := cfg.WHIPParams
	wp.SessionParams, wp.Hub = sp, g.hub
	g.whip = whip.New(wp)
	g.stack.push(g.whip.Close)
	pull, err := g.startPuller(cfg, log)
	if err != nil {
		return nil, err
	}
	vp := cfg.WHEPParams
	vp.SessionParams, vp.Hub, vp.Pull = sp, g.hub, pull
	g.whep = whep.New(vp)
	g.stack.push(g.whep.Close)
	if err := g.startIngest(cfg, log); err != nil {
		return nil, err
	}
	mp := cfg.RoomsParams
	mp.Logger = log
	g.rooms = rooms.New(mp)
	g.stack.push(g.rooms.Close)
	// A composite's output is a stream of its room but not a host.
	g.hub.Subscribe(func(e relay.Event) {
		if !g.comp.IsOutput(e.Path) {
			g.rooms.HandleEvent(e)
		}
	})
	if g.ln, err = net.Listen("tcp", g.listenAddr("http", cfg.HTTP)); err != nil {
		return nil, fmt.Errorf("http %q: %w", cfg.HTTP, err)
	}
	g.stack.push(func() { _ = g.ln.Close() })
	if err := g.joinCluster(); err != nil {
		return nil, err
	}
	p := cfg.WebParams
	p.WHIP, p.WHEP, p.Hub, p.Rooms, p.Cluster, p.Recordings, p.RelayParent = g.whip, g.whep, g.hub, g.rooms, g.member, g.rec, g.relayParent
	p.Metrics, p.Policy, p.TrustedProxies, p.ICEServers, p.SelfTest, p.Logger = g.metrics(), g.policy, proxies, g.linkHeaders, g.check, log
	p.HLS, p.Egress, p.Composite = hlsSrv, g.push, g.comp
	g.web = web.New(p)
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
	return g, nil
}

// startRecorder opens the recordings' storage (an S3 bucket when one is
// set, else a local directory) and starts the recorder.
func (g *Gateway) startRecorder(cfg Config, log *slog.Logger) error {
	var st storage.Storage
	var err error
	if cfg.RecordS3.Bucket != "" {
		st, err = storage.NewS3(context.Background(), cfg.RecordS3)
	} else {
		dir := cfg.RecordDir
		if dir == "" {
			dir = DefaultConfig().RecordDir
		}
		st, err = storage.NewLocal(dir)
	}
	if err != nil {
		return err
	}
	p := cfg.RecorderParams
	p.Hub, p.Storage, p.Logger = g.hub, st, log
	p.OnComplete = func(in recorder.Info) { g.hooks.Send(webhooks.RecordingFinished, in) }
	if g.rec, err = recorder.New(p); err != nil {
		return err
	}
	g.stack.push(g.rec.Close)
	return nil
}

// startPuller opens the cluster directory and, on a node with relay
// parents or a shared directory, starts the relay-tree puller; pull is
// what WHEP asks for a stream not live here (nil: nothing to ask).
func (g *Gateway) startPuller(cfg Config, log *slog.Logger) (pull func(context.Context, string) error, err error) {
	if cfg.ClusterRedis != "" {
		if g.dir, err = cluster.NewRedis(cfg.ClusterRedis, cluster.RedisOptions{}); err != nil {
			return nil, err
		}
	} else {
		g.dir = cluster.NewMemory()
	}
	g.stack.push(func() { _ = g.dir.Close() })
	if len(cfg.TreeParams.Parents) == 0 && cfg.ClusterRedis == "" {
		return nil, nil
	}
	p := cfg.TreeParams
	if p.DeadAfter <= 0 {
		p.DeadAfter = tree.DefaultParams().DeadAfter
	}
	relayAPI, err := g.engine.RelayAPI(p.DeadAfter/5, p.DeadAfter)
	if err != nil {
		return nil, err
	}
	// g.member is set before any request is served.
	p.Hub, p.Logger = g.hub, log
	p.Locate = func(ctx context.Context, path string) ([]string, error) { return g.member.Parents(ctx, path) }
	p.Client = rtcclient.Options{API: relayAPI, Token: cfg.ClusterKey,
		// A relay link never follows a redirect: the cluster key goes to
		// the configured parents only.
		HTTP: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}}
	g.puller = tree.New(p)
	g.stack.push(g.puller.Close)
	return g.puller.Ensure, nil
}
