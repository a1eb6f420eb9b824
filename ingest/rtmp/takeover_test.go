package rtmp_test

import (
	"fmt"
	"testing"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtmp"
)

// An RTMP encoder reconnecting after a network drop takes its stream over
// from its own silent connection (see ingesttest.ExpectTakeover).
func TestRTMPReconnectTakesOverSilentConnection(t *testing.T) {
	env := ingesttest.NewEnv(t)
	// The token names the publisher, as a real token's identity does.
	s := start(t, env, rtmp.Params{Authorize: func(_, _, token, _ string) (string, error) { return token, nil }})
	env.ExpectTakeover(t, "room/cam", func(who string) []string {
		return []string{"-f", "flv", "-flvflags", "no_duration_filesize", fmt.Sprintf("rtmp://%s/room/cam?token=%s", s.Addr(), who)}
	}, "stream is already being published")
}
