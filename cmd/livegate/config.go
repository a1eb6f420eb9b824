package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/livegate/livegate/cmd/internal/gateway"
	"github.com/livegate/livegate/egress/composite"
	egressrtmp "github.com/livegate/livegate/egress/rtmp"
	lgsettings "github.com/livegate/livegate/internal/settings"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/turn"
)

// settings is everything livegate is told. Each setting is a flag
// (--name), a key in the YAML file given by --config (name), and an
// environment variable (LIVEGATE_NAME with dashes as underscores).
// Precedence: flag, then YAML file, then environment, then the default.
// The gateway's settings are the `flag` tags of gateway.Config and of the
// packages' Params it holds; their defaults are gateway.DefaultConfig's,
// so each is written once, where it is used (see internal/settings).
type settings struct {
	ConfigFile string `flag:"config" help:"YAML file with settings (keys are the flag names)"`
	LogLevel   string `flag:"log-level" help:"debug, info, warn or error"`
	LogFormat  string `flag:"log-format" help:"text or json"`
	// GCPercent is the Go runtime's GOGC, set at start unless the GOGC
	// environment variable is (see applyGC).
	GCPercent int `flag:"gc-percent" help:"Go garbage collector target (GOGC): the heap may grow this many percent over live data between collections; lower keeps less memory per viewer for a little more GC CPU; the GOGC environment variable, when set, wins"`
	Gateway   gateway.Config
}

const envPrefix = "LIVEGATE_"

func defaultSettings() settings {
	return settings{LogLevel: "info", LogFormat: "text", GCPercent: defaultGCPercent, Gateway: gateway.DefaultConfig()}
}

// envName maps a setting to its environment variable.
func envName(name string) string { return lgsettings.EnvName(envPrefix, name) }

// load fills the settings from args, the YAML file and the environment.
func load(args []string, env func(string) string, stderr io.Writer) (*settings, error) {
	return loadFrom(defaultSettings(), args, env, stderr)
}

// loadFrom is load over other defaults.
func loadFrom(s settings, args []string, env func(string) string, stderr io.Writer) (*settings, error) {
	set, err := lgsettings.New("livegate", envPrefix, "config", &s)
	if err != nil {
		return nil, err
	}
	fs := set.FlagSet()
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: livegate [flags]\n\nEvery flag is also a key in the --config YAML file and an environment\nvariable LIVEGATE_<NAME> (dashes as underscores). Precedence: flag, YAML, environment, default.\n\n")
		set.PrintDefaults(stderr)
	}
	if err := set.Parse(args, env); err != nil {
		return nil, err
	}
	return &s, s.validate()
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
	if s.GCPercent < 10 || s.GCPercent > 1000 {
		return errors.New("gc-percent: must be between 10 and 1000")
	}
	for _, c := range s.Gateway.VideoCodecs {
		switch c {
		case "h264", "vp8", "vp9", "av1":
		default:
			return fmt.Errorf("video-codecs: unknown codec %q", c)
		}
	}
	if h := s.Gateway.History; h < 1 || h > 10000 {
		return errors.New("chat-history: must be between 1 and 10000")
	}
	if s.Gateway.ChatRate < 0 || s.Gateway.ChatBurst < 1 {
		return errors.New("chat-rate must be at least 0 and chat-burst at least 1")
	}
	if s.Gateway.MaxRooms < 0 || s.Gateway.MaxSubscribers < 0 {
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
	if s.Gateway.HLSParams.IdleTimeout < time.Second {
		return errors.New("hls-idle: must be at least 1s")
	}
	if k := s.Gateway.KeyframeMaxInterval; k < 0 || (k > 0 && k < 100*time.Millisecond) {
		return errors.New("keyframe-max-interval: must be 0 (off) or at least 100ms")
	}
	if d := s.Gateway.DeadAfter; d < 100*time.Millisecond || d > time.Minute {
		// Shorter: a loaded parent's scheduling hiccup would count as death.
		return errors.New("relay-dead-after: must be between 100ms and 1m")
	}
	g := s.Gateway
	if l := g.Limits; l.ViewsPerMinute < 0 || l.PublishesPerMinute < 0 || l.SessionsPerIP < 0 || l.EventStreamsPerIdentity < 0 {
		return errors.New("views-per-minute, publishes-per-minute, max-sessions-per-ip and max-event-streams-per-identity must be at least 0")
	}
	if g.SpoolMaxBytes < 0 {
		return errors.New("record-spool-max must be at least 0")
	}
	if g.Limits.CandidatesPerSession < 1 || g.MaxConnsPerIP < 1 {
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
