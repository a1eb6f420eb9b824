package rtsp_test

import (
	"fmt"
	"testing"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtsp"
)

// An RTSP encoder reconnecting after a network drop takes its stream over
// from its own silent session (see ingesttest.ExpectTakeover).
func TestRTSPReconnectTakesOverSilentSession(t *testing.T) {
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{Authorize: func(_, _, token, _ string) (string, error) { return token, nil }})
	env.ExpectTakeover(t, "room/cam", func(who string) []string {
		return []string{"-f", "rtsp", "-rtsp_transport", "tcp", fmt.Sprintf("rtsp://%s/room/cam?token=%s", s.Addr(), who)}
	}, "403")
}
