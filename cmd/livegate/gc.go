package main

import (
	"log/slog"
	"runtime/debug"
)

// defaultGCPercent is lower than Go's 100. The gateway's live heap is
// small (about 18 KB per connected viewer, a few MB per stream) and it
// allocates little once viewers are connected, so collections stay rare
// either way, while the heap the runtime keeps between them, and what a
// burst of handshakes leaves mapped, is most of a viewer's RSS: at 120
// viewers 57-81 KB per viewer instead of 97-121, for about 0.04 µs more
// CPU per packet (docs/performance.md, "Memory per viewer").
const defaultGCPercent = 50

// applyGC sets the collector's target unless the operator set GOGC, which
// the runtime has already applied and which is the documented way to tune
// any Go program.
func applyGC(percent int, gogc string, log *slog.Logger) {
	if gogc != "" {
		if percent != defaultGCPercent {
			log.Info("gc-percent ignored: the GOGC environment variable is set", "GOGC", gogc)
		}
		return
	}
	debug.SetGCPercent(percent)
}
