package gateway

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/livegate/livegate/egress/composite"
)

// startComposite sets up room composites (API and rules). They read hosts
// through the frame layer and publish ROOM/composite back into the hub.
func (g *Gateway) startComposite(cfg Config, log *slog.Logger) error {
	var rules []composite.Rule
	for _, s := range cfg.CompositeRules {
		r, err := composite.ParseRule(s)
		if err != nil {
			return err
		}
		rules = append(rules, r)
	}
	var def composite.Options
	if cfg.CompositeSize != "" {
		w, h, ok := strings.Cut(cfg.CompositeSize, "x")
		var err1, err2 error
		def.Width, err1 = strconv.Atoi(w)
		def.Height, err2 = strconv.Atoi(h)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("composite-size %q: want WIDTHxHEIGHT", cfg.CompositeSize)
		}
	}
	def.FPS = cfg.CompositeFPS
	g.comp = composite.New(composite.Params{Hub: g.hub, Frames: g.frames, FFmpeg: cfg.FFmpeg, Rules: rules, Defaults: def,
		Preset: cfg.CompositePreset, KeyframeInterval: cfg.KeyframeMaxInterval, Logger: log})
	g.stack.push(g.comp.Close)
	if len(rules) > 0 && !g.comp.Available() {
		log.Warn("composite-rules are set but ffmpeg is missing: no composite will start", "ffmpeg", cfg.FFmpeg)
	}
	return nil
}
