package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtcclient"
)

// A publisher that drops and comes back within the grace period keeps its
// viewers: same SSRC, contiguous sequence numbers, advancing timestamps,
// decodable pictures from the new publisher.
func TestPublisherReconnectKeepsViewers(t *testing.T) {
	g := startGateway(t, nil)
	c := loadClip(t)
	first, v, st := publishWatched(t, g, "room1/re")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	play(ctx, first, c, 45)
	// The connection drops without a DELETE, as when a laptop's Wi-Fi goes.
	_ = first.PC.Close()
	waitFor(t, 5*time.Second, "stream in grace", func() bool { return !st.Live() })
	before, _, pktsBefore := v.snapshot()

	second := g.publish(t, "room1/re")
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	play(ctx, second, c, 75)

	v.waitFrames(t, 3*time.Second, len(before)+70, "frames from the second publisher")
	frames := checkPublisherSwitch(t, v, len(before), len(pktsBefore), "the reconnect")
	for i, f := range frames[len(before):] {
		if !f.complete {
			t.Fatalf("frame %d after the reconnect is incomplete", i)
		}
	}
}

// publishWatched publishes path with one viewer attached to it.
func publishWatched(t *testing.T, g *testGateway, path string) (*rtcclient.Publisher, *viewer, *relay.Stream) {
	t.Helper()
	pub := g.publish(t, path)
	v := g.view(t, path)
	waitReaders(t, g, path, 1)
	st, _ := g.Hub().Get(path)
	return pub, v, st
}

// checkPublisherSwitch checks what viewer v got across a change of
// publisher (after framesBefore frames and packetsBefore packets; what
// names the change): the viewer is still connected and saw one stream
// (one SSRC, contiguous sequence numbers, timestamps that never go back),
// and its first frame from the new publisher is a complete keyframe. It
// returns the frames.
func checkPublisherSwitch(t *testing.T, v *viewer, framesBefore, packetsBefore int, what string) []frame {
	t.Helper()
	frames, _, pkts := v.snapshot()
	if v.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatalf("viewer connection is %s after %s", v.PC.ConnectionState(), what)
	}
	ssrc := pkts[0].SSRC
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SSRC != ssrc {
			t.Fatalf("packet %d: SSRC changed from %d to %d", i, ssrc, pkts[i].SSRC)
		}
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence jumps from %d to %d (switch at packet %d)",
				i, pkts[i-1].SequenceNumber, pkts[i].SequenceNumber, packetsBefore)
		}
		if d := int32(pkts[i].Timestamp - pkts[i-1].Timestamp); d < 0 {
			t.Fatalf("packet %d: timestamp goes back by %d", i, -d)
		}
	}
	// After the switch the viewer starts on the new publisher's keyframe.
	if next := frames[framesBefore]; !next.keyframe() || !next.complete {
		t.Fatalf("first frame after %s is not a complete keyframe", what)
	}
	return frames
}

// After the grace period without a publisher, viewers' sessions end.
func TestViewersEndAfterGrace(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.Grace = 700 * time.Millisecond })
	c := loadClip(t)
	pub := g.publish(t, "room1/gone")
	v := g.view(t, "room1/gone")
	waitConnected(t, v.PC)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	play(ctx, pub, c, 10)
	_ = pub.PC.Close()
	start := time.Now()
	waitFor(t, 5*time.Second, "viewer connection closed", func() bool {
		s := v.PC.ConnectionState()
		return s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed
	})
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("viewer ended after %v, before the 700 ms grace period", d)
	}
	if _, ok := g.Hub().Get("room1/gone"); ok {
		t.Fatal("stream still listed after the grace period")
	}
}
