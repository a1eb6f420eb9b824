package gateway

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay/codec"
)

// TestRTSPOutWithBrowserHost: RTSP players of a Chromium host's stream that
// join at different times each start on a keyframe, so ffmpeg decodes from
// the first frame on, with no "non-existing PPS" or missing-reference
// errors, across the host's resolution ramp.
func TestRTSPOutWithBrowserHost(t *testing.T) {
	b := browserTest(t, 120*time.Second)
	if b == nil {
		return
	}
	ffprobe := needProgram(t, "ffprobe")
	g, h := liveHost(t, b, func(c *Config) { c.RTSPAddr = "127.0.0.1:0" }, "e2e/host", chromeHostOpts{})
	defer h.stop(t)
	url := fmt.Sprintf("rtsp://%s/e2e/host", g.RTSPAddr())

	// Players join 1 s apart, so most of them land in the middle of a GOP.
	type result struct {
		out    string
		stderr string
		err    error
	}
	const players = 3
	results := make(chan result, players)
	for i := range players {
		time.Sleep(time.Duration(i) * 1100 * time.Millisecond)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rtsp_transport", "tcp",
				"-select_streams", "v:0", "-show_entries", "frame=key_frame,width,height,pict_type",
				"-read_intervals", "%+4", "-of", "csv=p=0", url)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			results <- result{string(out), stderr.String(), err}
		}()
	}
	// And at the RTP level: each player's first video packet starts a
	// keyframe and its numbering has no gap (padding-only packets of the
	// browser are left out without a hole).
	for i := range 2 {
		if i > 0 {
			time.Sleep(900 * time.Millisecond)
		}
		pk := firstRTSPPackets(t, url, 100)
		if !codec.IsKeyframe(codec.MimeH264, pk[0].Payload) {
			t.Errorf("RTP player %d: first video packet (NAL type %d) does not start a keyframe", i, pk[0].Payload[0]&0x1f)
		}
		for j := 1; j < len(pk); j++ {
			if pk[j].SequenceNumber != pk[j-1].SequenceNumber+1 || len(pk[j].Payload) == 0 {
				t.Errorf("RTP player %d: packet %d: seq %d after %d, %d bytes", i, j, pk[j].SequenceNumber, pk[j-1].SequenceNumber, len(pk[j].Payload))
				break
			}
		}
	}
	for i := range players {
		r := <-results
		if r.err != nil {
			t.Fatalf("player %d: ffprobe: %v\n%s", i, r.err, r.stderr)
		}
		var lines []string
		for _, l := range strings.Split(r.out, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		first := ""
		if len(lines) > 0 {
			first = lines[0]
		}
		t.Logf("player %d: %d frames, first %q, decoder said %q", i, len(lines), first, strings.TrimSpace(r.stderr))
		if len(lines) < 30 {
			t.Errorf("player %d: %d frames decoded in 4 s", i, len(lines))
		}
		if f := strings.Split(first, ","); len(f) < 2 || f[0] != "1" || f[len(f)-1] != "I" {
			t.Errorf("player %d: first decoded frame %q, want a keyframe", i, first)
		}
		if s := strings.TrimSpace(r.stderr); s != "" {
			t.Errorf("player %d: ffprobe reported errors: %s", i, s)
		}
	}
}

// firstRTSPPackets plays url over RTSP (TCP) and returns its first n video
// RTP packets.
func firstRTSPPackets(t *testing.T, url string, n int) []*rtp.Packet {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	got := make(chan *rtp.Packet, n)
	c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		if m.Type == description.MediaTypeVideo {
			select {
			case got <- pkt:
			default:
			}
		}
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	var list []*rtp.Packet
	timeout := time.After(15 * time.Second)
	for len(list) < n {
		select {
		case p := <-got:
			list = append(list, p)
		case <-timeout:
			t.Fatalf("RTSP player: %d video packets in 15 s", len(list))
		}
	}
	return list
}
