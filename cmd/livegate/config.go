package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/livegate/livegate/cmd/internal/gateway"
	"github.com/livegate/livegate/egress/composite"
	egressrtmp "github.com/livegate/livegate/egress/rtmp"
	ingestrtmp "github.com/livegate/livegate/ingest/rtmp"
	"github.com/livegate/livegate/ingest/whip"
	"github.com/livegate/livegate/recorder"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/tree"
	"github.com/livegate/livegate/relay/turn"
	"github.com/livegate/livegate/web"
	"github.com/livegate/livegate/web/rooms"
)

// settings is the one place where every setting, its default and its
// meaning are defined. Each is a flag (--name), a key in the YAML file given
// by --config (name), and an environment variable (LIVEGATE_NAME with dashes
// as underscores). Precedence: flag, then YAML file, then environment, then
// the default.
type settings struct {
	Gateway    gateway.Config
	LogLevel   string
	LogFormat  string
	ConfigFile string
}

// envName maps a setting to its environment variable.
func envName(name string) string {
	return "LIVEGATE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func define(fs *flag.FlagSet, s *settings) {
	g := &s.Gateway
	fs.StringVar(&s.ConfigFile, "config", "", "YAML file with settings (keys are the flag names)")
	fs.StringVar(&g.HTTP, "http", ":8080", "HTTP listen address (WHIP, WHEP, API, pages)")
	fs.StringVar(&g.WebRTCUDP, "webrtc-udp", ":8189", "the one UDP address for all WebRTC media; off: none (TCP and TURN only)")
	fs.StringVar(&g.WebRTCTCP, "webrtc-tcp", "", "the one TCP address for WebRTC media over ICE-TCP (networks that drop UDP); empty: the webrtc-udp address; off: none")
	fs.StringVar(&g.WHEPTransport, "whep-transport", "lite", "how WHEP viewers are served: lite (livegate's own ICE-lite/DTLS/SRTP transport with batched sends) or pion (a PeerConnection per viewer, the fallback)")
	fs.Var(listValue{&g.WebRTCIPs}, "webrtc-ips", "comma-separated IPs advertised as ICE host candidates (UDP and TCP); PUBLIC/LOCAL maps one interface address (1:1 NAT); auto: ask the stun-servers at start; empty: interface addresses")
	fs.Var(listValue{&g.STUNServers}, "stun-servers", "comma-separated STUN URLs (stun:host:port) for server-reflexive candidates; empty: no STUN")
	ic := &g.ICE
	fs.StringVar(&ic.TURNUDP, "turn-udp", "", "built-in TURN server's UDP address (e.g. :3478); empty: off")
	fs.StringVar(&ic.TURNTCP, "turn-tcp", "", "built-in TURN server's TCP address (e.g. :3478); empty: off")
	fs.StringVar(&ic.TURNTLS, "turn-tls", "", "built-in TURN server's TLS address (e.g. :5349, or :443 behind a TCP load balancer); needs turn-cert and turn-key; empty: off")
	fs.StringVar(&ic.TURNCert, "turn-cert", "", "PEM certificate (chain) for turn-tls")
	fs.StringVar(&ic.TURNKey, "turn-key", "", "PEM private key for turn-tls")
	fs.StringVar(&ic.TURNSecret, "turn-secret", "", "shared secret of the TURN credentials handed to clients (TURN REST convention; also coturn's static-auth-secret for an external server); empty: random per start")
	fs.StringVar(&ic.TURNRelayIP, "turn-relay-ip", "", "address in the built-in TURN server's relayed candidates (default: the first webrtc-ips address)")
	fs.DurationVar(&ic.TURNCredentialTTL, "turn-credential-ttl", 24*time.Hour, "how long TURN credentials handed to clients stay valid (a relayed session ends when they expire)")
	fs.Var(rawListValue{p: &ic.ICEServers, plain: true}, "ice-servers", "comma-separated stun:/turn:/turns: URLs handed to clients (Link headers, pages); {host} is the name the client used for HTTP; turn URLs get credentials from turn-secret; empty: the built-in TURN listeners")
	fs.StringVar(&s.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&s.LogFormat, "log-format", "text", "text or json")
	fs.DurationVar(&g.Grace, "grace", relay.DefaultParams().Grace, "how long viewers wait for a dropped publisher to come back")
	fs.DurationVar(&g.KeyframeInterval, "keyframe-interval", relay.DefaultParams().KeyframeInterval, "minimum time between keyframe requests to a publisher, per track")
	fs.DurationVar(&g.KeyframeWait, "keyframe-wait", relay.DefaultParams().KeyframeWait, "how long a new viewer waits for a fresh keyframe before starting from the cached GOP (negative: start from the cache at once)")
	fs.DurationVar(&g.KeyframeMaxInterval, "keyframe-max-interval", 2*time.Second, "while HLS, RTMP push, RTSP out or a recording reads a stream, ask its publisher for a keyframe when the GOP reaches this (0: keep the publisher's GOP)")
	g.VideoCodecs = whip.DefaultParams().VideoCodecs
	fs.Var(listValue{&g.VideoCodecs}, "video-codecs", "accepted video codecs in order of preference (h264, vp8, vp9, av1)")
	fs.Int64Var(&g.MaxBody, "max-body", web.DefaultParams().MaxBody, "largest accepted request body (SDP) in bytes")
	fs.IntVar(&g.MaxPublishers, "max-publishers", 1000, "concurrent WHIP sessions (0: unlimited)")
	fs.IntVar(&g.MaxViewers, "max-viewers", 20000, "concurrent WHEP sessions (0: unlimited)")
	fs.IntVar(&g.MaxViewersStream, "max-viewers-per-stream", 0, "viewers per stream (0: unlimited)")
	fs.IntVar(&g.MaxTracks, "max-tracks", rtc.DefaultMaxTracks, "media sections accepted per offer")
	fs.IntVar(&g.MaxSessionsPerIP, "max-sessions-per-ip", 200, "concurrent WHIP+WHEP sessions from one address (0: unlimited)")
	fs.IntVar(&g.PublishesPerMinute, "publishes-per-minute", 30, "WHIP offers accepted per minute from one address (0: unlimited)")
	fs.IntVar(&g.ViewsPerMinute, "views-per-minute", 600, "WHEP offers accepted per minute from one address (0: unlimited)")
	fs.IntVar(&g.EventStreamsPerID, "max-event-streams-per-identity", 20, "room event streams one token identity (or, without a token, one address) keeps open per room (0: unlimited)")
	fs.IntVar(&g.CandidatesPerSess, "max-ice-candidates", web.DefaultLimits().CandidatesPerSession, "ICE candidates a session accepts in its offer and trickle PATCHes together")
	fs.BoolVar(&g.RefusePrivateCandidates, "refuse-private-candidates", false, "ignore ICE candidates with private, CGNAT, link-local or loopback addresses (when every client is on the internet)")
	fs.IntVar(&g.RTMPConnsPerIP, "rtmp-conns-per-ip", ingestrtmp.DefaultParams().MaxConnsPerIP, "concurrent RTMP connections from one address")
	fs.DurationVar(&g.ConnectTimeout, "connect-timeout", rtc.DefaultConnectTimeout, "end sessions whose peer does not connect within this time")
	fs.StringVar(&g.CORSOrigin, "cors-origin", web.DefaultParams().CORSOrigin, "Access-Control-Allow-Origin for WHIP/WHEP/API when tokens are required (an open gateway sends no CORS headers)")
	fs.IntVar(&g.Workers, "workers", 0, "fan-out workers (0: one per core)")
	fs.StringVar(&g.AuthMode, "auth", "auto", "auto: tokens required, except from this machine while no auth-key is set; on: always; off: never, for clients on this machine (every listener on loopback)")
	fs.StringVar(&g.AuthKey, "auth-key", "", "secret (32+ bytes) that signs access tokens; never sent to browsers")
	fs.Var(rawListValue{p: &g.AuthPreviousKeys, plain: true}, "auth-previous-keys", "comma-separated former auth-keys whose tokens are still accepted (rotation); remove one to revoke its tokens")
	fs.StringVar(&g.AdminKey, "admin-key", "", "bearer key (16+ bytes) for app backends: mint tokens, admin API; Authorization header only")
	fs.Var(listValue{&g.OpenHosts}, "open-hosts", "comma-separated Host names, besides localhost and loopback addresses, that a gateway without auth-key (or with auth off) answers")
	fs.Var(listValue{&g.TrustedProxies}, "trusted-proxies", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client in logs and per-address limits")
	fs.IntVar(&g.MaxRooms, "max-rooms", 10000, "rooms kept at once; rooms with live streams always are (0: unlimited)")
	fs.IntVar(&g.MaxRoomSubscribers, "max-room-subscribers", 5000, "open room event streams (pages) per room (0: unlimited)")
	fs.IntVar(&g.ChatHistory, "chat-history", rooms.DefaultParams().History, "chat messages kept per room for late joiners (1-10000)")
	fs.Float64Var(&g.ChatRate, "chat-rate", 1, "chat messages per second per identity and room, sustained (0: unlimited)")
	fs.IntVar(&g.ChatBurst, "chat-burst", rooms.DefaultParams().ChatBurst, "chat messages an identity may send at once before chat-rate applies")
	fs.Var(rawListValue{p: &g.RelayParents}, "relay-parents", "comma-separated base URLs of parent nodes (http://origin:8080): pull streams this node lacks from them over WHEP")
	fs.StringVar(&g.ClusterKey, "cluster-key", "", "bearer key (16+ bytes) relay links present to parents (and accept from children)")
	fs.DurationVar(&g.RelayLinger, "relay-linger", tree.DefaultParams().Linger, "keep pulling a stream this long after its last viewer left")
	fs.DurationVar(&g.RelayDeadAfter, "relay-dead-after", tree.DefaultParams().DeadAfter, "a relay link that carried video and got nothing (media or keepalive answers) for this long is replaced by a pull from another parent (audio-only streams: 4x)")
	fs.StringVar(&g.ClusterRedis, "cluster-redis", "", "redis://host:port/db of the shared cluster directory (nodes, load, where streams originate); empty: this node alone")
	fs.StringVar(&g.ClusterRole, "cluster-role", "", "origin or edge; edges receive redirected viewers (default: edge with relay-parents, else origin)")
	fs.StringVar(&g.NodeID, "node-id", "", "this node's name in the cluster (default: host name and public host:port)")
	fs.StringVar(&g.PublicURL, "public-url", "", "base URL other nodes and redirected viewers reach this node at (default: http://HOST:PORT of --http)")
	fs.StringVar(&g.RecordDir, "record-dir", "./data/recordings", "local directory recordings are stored in (when no S3 bucket is set)")
	fs.StringVar(&g.RecordSpool, "record-spool", recorder.DefaultParams().SpoolDir, "local spool for segments not yet stored; survives crashes")
	fs.Int64Var(&g.RecordSpoolMax, "record-spool-max", 10<<30, "bytes waiting in the spool at most; beyond, new segments are dropped and counted (0: unlimited)")
	fs.Var(rawListValue{p: &g.RecordRules, plain: true}, "record-rules", "comma-separated path patterns recorded whenever they go live (e.g. room/*)")
	fs.DurationVar(&g.RecordSegment, "record-segment", recorder.DefaultParams().SegmentDuration, "target recording segment length (cut on keyframes)")
	fs.DurationVar(&g.RecordRetention, "record-retention", 0, "delete recordings older than this (0: keep)")
	fs.StringVar(&g.RecordS3.Endpoint, "s3-endpoint", "", "S3-compatible endpoint URL (empty: AWS)")
	fs.StringVar(&g.RecordS3.Region, "s3-region", "us-east-1", "S3 region")
	fs.StringVar(&g.RecordS3.Bucket, "s3-bucket", "", "S3 bucket for recordings (empty: local directory)")
	fs.StringVar(&g.RecordS3.Prefix, "s3-prefix", "", "key prefix for recordings in the bucket")
	fs.BoolVar(&g.RecordS3.PathStyle, "s3-path-style", false, "path-style bucket addressing (most self-hosted servers)")
	fs.StringVar(&g.RecordS3.AccessKeyID, "s3-access-key", "", "S3 access key (empty: the standard AWS credential chain)")
	fs.StringVar(&g.RecordS3.SecretAccessKey, "s3-secret-key", "", "S3 secret key")
	fs.BoolVar(&g.HLS, "hls", true, "serve live H.264 streams as LL-HLS at /hls/ROOM/NAME/index.m3u8")
	fs.DurationVar(&g.HLSIdle, "hls-idle", 60*time.Second, "stop a stream's HLS muxer after this long without requests")
	fs.StringVar(&g.FFmpeg, "ffmpeg", "", "ffmpeg for Opus->AAC in RTMP pushes and AAC->Opus on RTMP/RTSP ingest; empty: from PATH; -: none (video only)")
	fs.StringVar(&g.RTMPAddr, "rtmp-addr", ":1935", "RTMP ingest address (rtmp://HOST:1935/ROOM/NAME?token=JWT); empty: off")
	fs.StringVar(&g.RTSPAddr, "rtsp-addr", ":8554", "RTSP address for publishing (ANNOUNCE/RECORD) and reading rtsp://HOST:8554/ROOM/NAME; empty: off")
	fs.Var(rawListValue{p: &g.RTMPPushRules, plain: true}, "rtmp-push-rules", "comma-separated PATTERN=URL[|video-only]: push matching streams when they go live, e.g. show/*=rtmp://cdn/live/{name}")
	fs.Var(rawListValue{p: &g.CompositeRules, plain: true}, "composite-rules", "comma-separated ROOM-PATTERN[?layout=grid|speaker&size=WxH&fps=N&videoBitrate=N&audioBitrate=N]: mix the hosts of matching rooms into ROOM/composite while they have hosts, e.g. show-*?layout=speaker")
	fs.StringVar(&g.CompositeSize, "composite-size", "1280x720", "default composite picture size (WIDTHxHEIGHT)")
	fs.IntVar(&g.CompositeFPS, "composite-fps", 30, "default composite frame rate")
	fs.StringVar(&g.CompositePreset, "composite-preset", "veryfast", "x264 preset of composite encoders (ultrafast ... medium: slower is sharper and costs more CPU)")
	fs.Var(rawListValue{p: &g.WebhookURLs}, "webhook-urls", "comma-separated URLs notified of stream, room, recording and egress events")
	fs.StringVar(&g.WebhookSecret, "webhook-secret", "", "HMAC-SHA256 key signing webhook deliveries (X-Livegate-Signature)")
}

// load fills s from args, the YAML file and the environment.
func load(args []string, env func(string) string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	fs := flag.NewFlagSet("livegate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	define(fs, s)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: livegate [flags]\n\nEvery flag is also a key in the --config YAML file and an environment\nvariable LIVEGATE_<NAME> (dashes as underscores). Precedence: flag, YAML, environment, default.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if s.ConfigFile == "" && !set["config"] {
		s.ConfigFile = env(envName("config"))
	}
	if s.ConfigFile != "" {
		if err := loadYAML(fs, s.ConfigFile, set); err != nil {
			return nil, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		if v, ok := lookupEnv(env, envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, s.validate()
}

func lookupEnv(env func(string) string, name string) (string, bool) {
	v := env(name)
	return v, v != ""
}

func loadYAML(fs *flag.FlagSet, path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "config" || fs.Lookup(k) == nil {
			return fmt.Errorf("config %s: unknown setting %q", path, k)
		}
		if set[k] {
			continue
		}
		if err := fs.Set(k, yamlString(m[k])); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
		set[k] = true
	}
	return nil
}

func yamlString(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func (s *settings) validate() error {
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: %q is not debug, info, warn or error", s.LogLevel)
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		return fmt.Errorf("log-format: %q is not text or json", s.LogFormat)
	}
	for _, c := range s.Gateway.VideoCodecs {
		switch c {
		case "h264", "vp8", "vp9", "av1":
		default:
			return fmt.Errorf("video-codecs: unknown codec %q", c)
		}
	}
	if h := s.Gateway.ChatHistory; h < 1 || h > 10000 {
		return errors.New("chat-history: must be between 1 and 10000")
	}
	if s.Gateway.ChatRate < 0 || s.Gateway.ChatBurst < 1 {
		return errors.New("chat-rate must be at least 0 and chat-burst at least 1")
	}
	if s.Gateway.MaxRooms < 0 || s.Gateway.MaxRoomSubscribers < 0 {
		return errors.New("max-rooms and max-room-subscribers must be at least 0")
	}
	for _, r := range s.Gateway.RTMPPushRules {
		if _, err := egressrtmp.ParseRule(r); err != nil {
			return fmt.Errorf("rtmp-push-rules: %w", err)
		}
	}
	for _, r := range s.Gateway.CompositeRules {
		if _, err := composite.ParseRule(r); err != nil {
			return fmt.Errorf("composite-rules: %w", err)
		}
	}
	if f := s.Gateway.CompositeFPS; f < 1 || f > 60 {
		return errors.New("composite-fps: must be between 1 and 60")
	}
	switch s.Gateway.CompositePreset {
	case "ultrafast", "superfast", "veryfast", "faster", "fast", "medium":
	default:
		return errors.New("composite-preset: one of ultrafast, superfast, veryfast, faster, fast, medium")
	}
	if s.Gateway.HLSIdle < time.Second {
		return errors.New("hls-idle: must be at least 1s")
	}
	if k := s.Gateway.KeyframeMaxInterval; k < 0 || (k > 0 && k < 100*time.Millisecond) {
		return errors.New("keyframe-max-interval: must be 0 (off) or at least 100ms")
	}
	if d := s.Gateway.RelayDeadAfter; d < 100*time.Millisecond || d > time.Minute {
		// Shorter: a loaded parent's scheduling hiccup would count as death.
		return errors.New("relay-dead-after: must be between 100ms and 1m")
	}
	g := s.Gateway
	if g.ViewsPerMinute < 0 || g.PublishesPerMinute < 0 || g.MaxSessionsPerIP < 0 || g.EventStreamsPerID < 0 {
		return errors.New("views-per-minute, publishes-per-minute, max-sessions-per-ip and max-event-streams-per-identity must be at least 0")
	}
	if g.RecordSpoolMax < 0 {
		return errors.New("record-spool-max must be at least 0")
	}
	if g.CandidatesPerSess < 1 || g.RTMPConnsPerIP < 1 {
		return errors.New("max-ice-candidates and rtmp-conns-per-ip must be at least 1")
	}
	var ips []string
	for _, ip := range g.WebRTCIPs {
		if ip != "auto" {
			ips = append(ips, ip)
		}
	}
	if err := rtc.CheckIPs(ips); err != nil {
		return err
	}
	for _, u := range g.ICE.ICEServers {
		if err := turn.CheckURL(u); err != nil {
			return fmt.Errorf("ice-servers: %w", err)
		}
	}
	if g.ICE.TURNCredentialTTL < time.Minute {
		return errors.New("turn-credential-ttl: must be at least 1m")
	}
	if g.ICE.TURNTLS != "" && (g.ICE.TURNCert == "" || g.ICE.TURNKey == "") {
		return errors.New("turn-tls: needs turn-cert and turn-key")
	}
	if s.Gateway.MaxBody < 1024 {
		return errors.New("max-body: must be at least 1024 bytes")
	}
	return nil
}

// rawListValue is a comma-separated list flag that keeps case: URLs, or
// any text when plain.
type rawListValue struct {
	p     *[]string
	plain bool
}

func (l rawListValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l rawListValue) Set(v string) error {
	*l.p = nil
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			if !l.plain && !strings.HasPrefix(x, "http://") && !strings.HasPrefix(x, "https://") {
				return fmt.Errorf("%q is not an http(s) URL", x)
			}
			*l.p = append(*l.p, strings.TrimRight(x, "/"))
		}
	}
	return nil
}

// listValue is a comma-separated list flag.
type listValue struct{ p *[]string }

func (l listValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listValue) Set(v string) error {
	*l.p = nil
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*l.p = append(*l.p, strings.ToLower(x))
		}
	}
	return nil
}
