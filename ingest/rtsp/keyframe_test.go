package rtsp_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/ingest/internal/ingesttest"
	"github.com/livegate/livegate/ingest/rtsp"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// publishClip plays the test clip (an IDR every 2 s; its Opus audio too
// with audio) into the hub at path, as a WebRTC publisher would, until the
// test ends.
func publishClip(t *testing.T, env *ingesttest.Env, path string, audio bool) {
	t.Helper()
	video, err := clip.LoadH264("../../testdata/clip.h264")
	if err != nil {
		t.Fatal(err)
	}
	tracks := []relay.TrackInfo{{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000,
		Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}}
	var sound []clip.Sample
	if audio {
		if sound, err = clip.LoadOpus("../../testdata/clip.ogg"); err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, relay.TrackInfo{Kind: codec.Audio,
			Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000, Channels: 2}})
	}
	pub, err := env.Hub.Publish(path, tracks, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); pub.End("test over") })
	wg.Add(1)
	go func() {
		defer wg.Done()
		pk := frames.NewPacketizer(codec.MimeH264, 96)
		var ts uint32
		_ = clip.Play(ctx, video, func(smp clip.Sample, _ int) error {
			for _, p := range pk.Packetize(ts, ingesttest.SplitAnnexB(smp.Data)) {
				pub.WriteRTP(0, &p.Header, p.Payload)
			}
			ts += uint32(smp.Duration * 90000 / time.Second)
			return nil
		})
	}()
	if !audio {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ts uint32
		var seq uint16
		_ = clip.Play(ctx, sound, func(smp clip.Sample, _ int) error {
			pub.WriteRTP(1, &rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts}, smp.Data)
			seq++
			ts += uint32(smp.Duration * 48000 / time.Second)
			return nil
		})
	}()
}

type nopSource struct{}

func (nopSource) RequestKeyframe(int) {}

// rtspPlayer is a gortsplib client that records the video packets it gets.
type rtspPlayer struct {
	c       *gortsplib.Client
	started time.Time

	mu      sync.Mutex
	packets []*rtp.Packet
	first   time.Duration // from PLAY to the first packet
}

func playRTSP(t *testing.T, url string) *rtspPlayer {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	p := &rtspPlayer{c: &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}}
	if err := p.c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.c.Close)
	desc, _, err := p.c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	p.c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		if m.Type != description.MediaTypeVideo {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.packets) == 0 {
			p.first = time.Since(p.started)
		}
		p.packets = append(p.packets, pkt)
	})
	p.started = time.Now()
	if _, err := p.c.Play(nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// since returns the video packets from index i on.
func (p *rtspPlayer) since(i int) []*rtp.Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i >= len(p.packets) {
		return nil
	}
	return append([]*rtp.Packet(nil), p.packets[i:]...)
}

// checkStartsOnKeyframe asserts that packets begin with a whole IDR
// access unit (keyframe start, then up to the marker) in contiguous
// sequence numbers.
func checkStartsOnKeyframe(t *testing.T, who string, packets []*rtp.Packet) {
	t.Helper()
	if len(packets) == 0 {
		t.Fatalf("%s: no video", who)
	}
	if !codec.IsKeyframe(codec.MimeH264, packets[0].Payload) {
		t.Fatalf("%s: first video packet (NAL type %d) is not a keyframe", who, packets[0].Payload[0]&0x1f)
	}
	dp := frames.NewDepacketizer(codec.MimeH264)
	for i, pkt := range packets {
		if i > 0 && pkt.SequenceNumber != packets[i-1].SequenceNumber+1 {
			t.Fatalf("%s: gap in the first frame: %d after %d", who, pkt.SequenceNumber, packets[i-1].SequenceNumber)
		}
		if out := dp.Push(&pkt.Header, pkt.Payload); len(out) > 0 {
			var units [][]byte
			for _, f := range out {
				units = append(units, f.Units...)
			}
			_, idr := nalTypes(units)
			if !idr {
				t.Fatalf("%s: first whole frame has no IDR slice", who)
			}
			return
		}
	}
}

func nalTypes(units [][]byte) (types []int, idr bool) {
	for _, u := range units {
		if len(u) > 0 {
			types = append(types, int(u[0]&0x1f))
			idr = idr || u[0]&0x1f == 5
		}
	}
	return types, idr
}

// TestRTSPPlayersStartOnKeyframe: players of one path that join at
// different points of the GOP (the clip has an IDR every 2 s) each start
// on a keyframe right away, and a player that pauses and plays again
// resumes on one.
func TestRTSPPlayersStartOnKeyframe(t *testing.T) {
	env := ingesttest.NewEnv(t)
	s := start(t, env, rtsp.Params{})
	publishClip(t, env, "room/kf", false)
	env.WaitLive(t, "room/kf", 5*time.Second)
	url := fmt.Sprintf("rtsp://%s/room/kf", s.Addr())

	time.Sleep(300 * time.Millisecond)
	a := playRTSP(t, url)
	time.Sleep(900 * time.Millisecond) // mid-GOP for the second player
	b := playRTSP(t, url)
	time.Sleep(1500 * time.Millisecond)
	for _, p := range []struct {
		name string
		p    *rtspPlayer
	}{{"first player", a}, {"player joining mid-GOP", b}} {
		pk := p.p.since(0)
		checkStartsOnKeyframe(t, p.name, pk)
		p.p.mu.Lock()
		first := p.p.first
		p.p.mu.Unlock()
		t.Logf("%s: first packet %v after PLAY, %d packets", p.name, first.Round(time.Millisecond), len(pk))
		// The relay waits 600 ms for a fresh keyframe (this publisher
		// cannot be asked) and then serves its cached GOP: well within
		// the clip's 2 s GOP even on a loaded machine.
		if first > 2*time.Second {
			t.Errorf("%s: first video %v after PLAY, want the cached GOP within a GOP", p.name, first)
		}
	}

	if _, err := b.c.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	n := len(b.since(0))
	if _, err := b.c.Play(nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(b.since(n)) < 50 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	checkStartsOnKeyframe(t, "player after PAUSE and PLAY", b.since(n))
}
