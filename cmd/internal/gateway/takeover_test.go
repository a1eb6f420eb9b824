package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/web/auth"
)

// Found: a publisher killed without a DELETE kept its stream until its ICE
// timed out, and its new session got 409 meanwhile. Here the first
// publisher stops sending but its connection stays up (it even answers
// ICE checks, so only its silence tells): after publisher-takeover-after
// (1 s) its new session takes the stream over at once, the old session is
// ended, and the viewer continues as after any reconnect: same SSRC,
// contiguous sequence numbers, the new publisher's first keyframe.
func TestSilentPublisherTakenOver(t *testing.T) {
	g := startGateway(t, nil)
	c := loadClip(t)
	first, v, _ := publishWatched(t, g, "room1/take")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	play(ctx, first, c, 45)
	stopped := time.Now()
	before, _, pktsBefore := v.snapshot()

	// Right away: the first is still counted as sending.
	if _, err := tryPublish(t, g, "room1/take", ""); statusOf(err) != http.StatusConflict {
		t.Fatalf("new session 0 s after the last packet: %v, want 409", err)
	}
	time.Sleep(time.Until(stopped.Add(1100 * time.Millisecond)))
	second, err := tryPublish(t, g, "room1/take", "")
	if err != nil {
		t.Fatalf("new session after 1.1 s of silence: %v, want a takeover", err)
	}
	took := time.Since(stopped)
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	waitConnected(t, second.PC)
	play(ctx, second, c, 75)
	v.waitFrames(t, 3*time.Second, len(before)+70, "frames from the second publisher")
	waitFor(t, 3*time.Second, "the first publisher's session ended", func() bool {
		s := first.PC.ConnectionState()
		return g.whip.Sessions() == 1 && (s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed ||
			s == webrtc.PeerConnectionStateDisconnected)
	})
	t.Logf("taken over %v after the first publisher's last packet", took.Round(time.Millisecond))
	checkPublisherSwitch(t, v, len(before), len(pktsBefore), "the takeover")
}

// With tokens, takeover is by the same identity only, and never of a
// publisher that is still sending: a second tab of alice gets 409 while
// the first sends, and takes over once it has been silent for 1 s. Another
// identity cannot publish alice's stream at all (403).
func TestTakeoverNeedsSilence(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.AuthMode, c.AuthKey = "on", testKey })
	c := loadClip(t)
	alice := token(t, "r", "alice", time.Hour, auth.GrantPublish)
	first, err := tryPublish(t, g, "r/alice", alice)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close(context.Background()) })
	waitConnected(t, first.PC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sending := make(chan struct{})
	go func() { defer close(sending); play(ctx, first, c, 0) }()
	time.Sleep(1500 * time.Millisecond)
	_, err = tryPublish(t, g, "r/alice", alice)
	if statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "already_publishing") {
		t.Fatalf("alice's second session while the first sends: %v, want 409 already_publishing", err)
	}
	bob := token(t, "r", "bob", time.Hour, auth.GrantPublish)
	if _, err := tryPublish(t, g, "r/alice", bob); statusOf(err) != http.StatusForbidden {
		t.Fatalf("bob publishing alice's stream: %v, want 403", err)
	}
	cancel()
	<-sending
	time.Sleep(1200 * time.Millisecond)
	second, err := tryPublish(t, g, "r/alice", alice)
	if err != nil {
		t.Fatalf("alice's second session after the first fell silent: %v", err)
	}
	t.Cleanup(func() { _ = second.Close(context.Background()) })
}

// tryPublish offers to publish path with tok (none if "").
func tryPublish(t *testing.T, g *testGateway, path, tok string) (*rtcclient.Publisher, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := clientOpts(t)
	o.Token = tok
	return rtcclient.Publish(ctx, g.base+"/whip/"+path, o, rtcclient.H264ConstrainedBaseline, true)
}
