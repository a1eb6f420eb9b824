package rtc

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// RelayAPI is IngestAPI with its own ICE timing, for relay links pulling
// from a parent: the child pings its parent every keepalive and counts the
// link as disconnected after dead without hearing from it (answers or
// media). A parent that died without closing is then noticed in well
// under a second, where publishers' timeouts must stay long enough for
// flaky last miles.
func (e *Engine) RelayAPI(keepalive, dead time.Duration) (*webrtc.API, error) {
	cfg := e.cfg
	cfg.ICEKeepalive, cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout = keepalive, dead, 2*dead
	// A parent reachable only over TCP (its UDP off or blocked) is dialed.
	cfg.activeTCP = true
	return e.newAPI(cfg, true, false)
}
