package gateway

import (
	"fmt"
	"time"

	"github.com/livegate/livegate/egress/composite"
	"github.com/livegate/livegate/egress/hls"
	"github.com/livegate/livegate/egress/whep"
	ingestrtmp "github.com/livegate/livegate/ingest/rtmp"
	"github.com/livegate/livegate/ingest/whip"
	"github.com/livegate/livegate/recorder"
	"github.com/livegate/livegate/recorder/storage"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/tree"
	"github.com/livegate/livegate/relay/turn"
	"github.com/livegate/livegate/web"
	"github.com/livegate/livegate/web/rooms"
	"github.com/livegate/livegate/web/webhooks"
)

// The packages' own Params are the sections of Config. Embedded under
// these names, their settings read as cfg.Grace or cfg.ChatRate, and a
// name two sections share is reached through the section
// (cfg.WHEPParams.MaxSessions). A section without a section tag is listed
// in --help under the gateway settings before it.
type (
	RelayParams    = relay.Params
	WHIPParams     = whip.Params
	WHEPParams     = whep.Params
	TreeParams     = tree.Params
	RoomsParams    = rooms.Params
	WebParams      = web.Params
	RecorderParams = recorder.Params
	HLSParams      = hls.Params
	RTMPInParams   = ingestrtmp.Params
	WebhookParams  = webhooks.Params
)

// Config is every setting of the gateway: the gateway's own (listeners,
// access, cluster, storage, settings several packages share) and the
// packages' Params, whose operator settings carry a `flag` tag (see
// internal/settings). cmd/livegate turns the tags into flags, YAML keys
// and environment variables over DefaultConfig; a zero Config field takes
// the package's zero meaning, as in a test that sets only what it needs.
// The gateway fills each section's run-time fields (hub, engine, logger).
type Config struct {
	HTTP      string `flag:"http" section:"HTTP and WebRTC media" help:"HTTP listen address (WHIP, WHEP, API, pages)"`
	WebRTCUDP string `flag:"webrtc-udp" help:"the one UDP address for all WebRTC media; off: none (TCP and TURN only)"`
	// WebRTCTCP is the ICE-TCP address; empty: the same as WebRTCUDP
	// (another free port when that one is port 0); "off": none.
	WebRTCTCP string `flag:"webrtc-tcp" help:"the one TCP address for WebRTC media over ICE-TCP (networks that drop UDP); empty: the webrtc-udp address; off: none"`
	// WebRTCTCPConnsPerIP bounds the ICE-TCP connections of one client
	// address (IPv6: /64); 0: rtc.DefaultTCPConnsPerIP.
	WebRTCTCPConnsPerIP int `flag:"webrtc-tcp-conns-per-ip" help:"concurrent ICE-TCP connections from one address (IPv6: one /64); more are closed at once"`
	// WHEPTransport is how WHEP viewers are served: "lite" (or empty),
	// livegate's own transport; "pion", a PeerConnection each (fallback).
	WHEPTransport string   `flag:"whep-transport" help:"how WHEP viewers are served: lite (livegate's own ICE-lite/DTLS/SRTP transport with batched sends) or pion (a PeerConnection per viewer, the fallback)"`
	WebRTCIPs     []string `flag:"webrtc-ips" list:"lower" help:"comma-separated IPs advertised as ICE host candidates (UDP and TCP); PUBLIC/LOCAL maps one interface address (1:1 NAT); auto: ask the stun-servers at start; empty: interface addresses"`
	STUNServers   []string `flag:"stun-servers" list:"lower" help:"comma-separated STUN URLs (stun:host:port) for server-reflexive candidates; empty: no STUN"`
	// MaxTracks and ConnectTimeout apply to WHIP and WHEP sessions alike.
	MaxTracks      int           `flag:"max-tracks" help:"media sections accepted per offer"`
	ConnectTimeout time.Duration `flag:"connect-timeout" help:"end sessions whose peer does not connect within this time"`

	RelayParams `section:"Streams (relay core)"`
	WHIPParams  `section:"Publishing (WHIP)"`
	WHEPParams  `section:"Viewing (WHEP)"`

	ICE ICEConfig `section:"TURN and ICE servers"` // ICE-TCP aside: TURN, ICE servers for clients

	AuthMode         string   `flag:"auth" section:"Access" help:"auto: tokens required, except from this machine while no auth-key is set; on: always; off: never, for clients on this machine (every listener on loopback)"` // see auth.Mode
	AuthKey          string   `flag:"auth-key" help:"secret (32+ bytes) that signs access tokens; never sent to browsers"`
	AuthPreviousKeys []string `flag:"auth-previous-keys" list:"raw" help:"comma-separated former auth-keys whose tokens are still accepted (rotation); remove one to revoke its tokens"`
	AdminKey         string   `flag:"admin-key" help:"bearer key (16+ bytes) for app backends: mint tokens, admin API; Authorization header only"`
	OpenHosts        []string `flag:"open-hosts" list:"lower" help:"comma-separated Host names, besides localhost and loopback addresses, that a gateway without auth-key (or with auth off) answers"`
	TrustedProxies   []string `flag:"trusted-proxies" list:"lower" help:"comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client in logs and per-address limits"`

	WebParams `section:"HTTP API and per-client limits"`

	RoomsParams `section:"Rooms and chat"`

	ClusterKey   string `flag:"cluster-key" section:"Cluster and relay tree" help:"bearer key (16+ bytes) relay links present to parents (and accept from children)"`
	ClusterRedis string `flag:"cluster-redis" help:"redis://host:port/db of the shared cluster directory (nodes, load, where streams originate); empty: this node alone"`
	ClusterRole  string `flag:"cluster-role" help:"origin or edge; edges receive redirected viewers (default: edge with relay-parents, else origin)"`
	NodeID       string `flag:"node-id" help:"this node's name in the cluster (default: host name and public host:port)"`
	PublicURL    string `flag:"public-url" help:"base URL other nodes and redirected viewers reach this node at (default: http://HOST:PORT of --http)"`
	TreeParams

	RecordDir string           `flag:"record-dir" section:"Recording" help:"local directory recordings are stored in (when no S3 bucket is set)"`
	RecordS3  storage.S3Config // used when its Bucket is set
	RecorderParams

	HLS    bool   `flag:"hls" section:"HLS, RTMP, RTSP and composites" help:"serve live H.264 streams as LL-HLS at /hls/ROOM/NAME/index.m3u8"`
	FFmpeg string `flag:"ffmpeg" help:"ffmpeg for Opus->AAC in RTMP pushes and AAC->Opus on RTMP/RTSP ingest; empty: from PATH; -: none (video only)"`
	// RTMP and RTSP ingest (and RTSP out); empty: off.
	RTMPAddr      string   `flag:"rtmp-addr" help:"RTMP ingest address (rtmp://HOST:1935/ROOM/NAME?token=JWT); empty: off"`
	RTSPAddr      string   `flag:"rtsp-addr" help:"RTSP address for publishing (ANNOUNCE/RECORD) and reading rtsp://HOST:8554/ROOM/NAME; empty: off"`
	RTMPPushRules []string `flag:"rtmp-push-rules" help:"comma-separated PATTERN=URL[|video-only]: push matching streams when they go live, e.g. show/*=rtmp://cdn/live/{name}"`
	// Room composites: rooms matching a rule are mixed into ROOM/composite
	// while they have hosts; defaults for API requests and rules.
	CompositeRules  []string `flag:"composite-rules" help:"comma-separated ROOM-PATTERN[?layout=grid|speaker&size=WxH&fps=N&videoBitrate=N&audioBitrate=N]: mix the hosts of matching rooms into ROOM/composite while they have hosts, e.g. show-*?layout=speaker"`
	CompositeSize   string   `flag:"composite-size" help:"default composite picture size (WIDTHxHEIGHT)"` // empty: composite's default
	CompositeFPS    int      `flag:"composite-fps" help:"default composite frame rate"`                   // 0: composite's default
	CompositePreset string   `flag:"composite-preset" help:"x264 preset of composite encoders (ultrafast ... medium: slower is sharper and costs more CPU)"`
	HLSParams
	RTMPInParams

	WebhookParams `section:"Webhooks"`

	ShutdownTimeout time.Duration // default 3 s
}

// DefaultConfig is what livegate starts with before flags, the YAML file
// and the environment: each package's DefaultParams and the gateway's
// own defaults.
func DefaultConfig() Config {
	return Config{
		HTTP:                ":8080",
		WebRTCUDP:           ":8189",
		WHEPTransport:       "lite",
		WebRTCTCPConnsPerIP: rtc.DefaultTCPConnsPerIP,
		MaxTracks:           rtc.DefaultMaxTracks,
		ConnectTimeout:      rtc.DefaultConnectTimeout,
		ICE: ICEConfig{TURNCredentialTTL: 24 * time.Hour,
			TURNAllocationsPerUser: turn.DefaultAllocationsPerUser, TURNAllocationsPerIP: turn.DefaultAllocationsPerIP},
		AuthMode:        "auto",
		RecordDir:       "./data/recordings",
		RecordS3:        storage.S3Config{Region: storage.DefaultRegion},
		HLS:             true,
		RTMPAddr:        ":1935",
		RTSPAddr:        ":8554",
		CompositeSize:   fmt.Sprintf("%dx%d", composite.DefaultWidth, composite.DefaultHeight),
		CompositeFPS:    composite.DefaultFPS,
		CompositePreset: composite.DefaultPreset,
		ShutdownTimeout: 3 * time.Second,
		RelayParams:     relay.DefaultParams(),
		WHIPParams:      whip.DefaultParams(),
		WHEPParams:      whep.DefaultParams(),
		TreeParams:      tree.DefaultParams(),
		RoomsParams:     rooms.DefaultParams(),
		WebParams:       web.DefaultParams(),
		RecorderParams:  recorder.DefaultParams(),
		HLSParams:       hls.DefaultParams(),
		RTMPInParams:    ingestrtmp.DefaultParams(),
		WebhookParams:   webhooks.DefaultParams(),
	}
}
