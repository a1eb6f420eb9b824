package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/egress/whep"
	"github.com/livegate/livegate/ingest/whip"
	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/cluster/clustertest"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
	"github.com/livegate/livegate/relay/tree"
	"github.com/livegate/livegate/web"
)

const clusterKey = "cluster-key-for-tests"

// node is a gateway assembled as cmd/internal/gateway does, with a cluster
// member: an origin, or an edge whose only way to find streams is the
// directory (no static parents).
type node struct {
	hub    *relay.Hub
	engine *rtc.Engine
	whip   *whip.Server
	whep   *whep.Server
	puller *tree.Puller
	member *cluster.Member
	srv    *http.Server
	base   string
}

func logger() *slog.Logger {
	if os.Getenv("LIVEGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startNode(t *testing.T, dir cluster.Directory, role cluster.Role) *node {
	t.Helper()
	log := logger()
	n := &node{hub: relay.NewHub(relay.Params{Grace: 2 * time.Second, Logger: log})}
	var err error
	n.engine, err = rtc.NewEngine(rtc.Config{UDPAddr: "127.0.0.1:0", IPs: []string{"127.0.0.1"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.base = "http://" + ln.Addr().String()
	n.whip = whip.New(whip.Params{SessionParams: rtc.SessionParams{Engine: n.engine, Logger: log}, Hub: n.hub})
	var pull func(context.Context, string) error
	if role == cluster.RoleEdge {
		n.puller = tree.New(tree.Params{Hub: n.hub, Linger: 2 * time.Second, Logger: log,
			Locate: func(ctx context.Context, path string) ([]string, error) { return n.member.Parents(ctx, path) },
			Client: rtcclient.Options{API: n.engine.IngestAPI(), Token: clusterKey, HTTP: &http.Client{Timeout: 10 * time.Second}}})
		pull = n.puller.Ensure
	}
	relayed := func(string) bool { return false }
	if n.puller != nil {
		relayed = n.puller.Relaying
	}
	n.member, err = cluster.NewMember(cluster.MemberParams{Directory: dir, Hub: n.hub, URL: n.base, Role: role,
		Load:    cluster.HubLoad(n.hub, func() int { return n.whep.Sessions() }, 100),
		Relayed: relayed, Heartbeat: 200 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.whep = whep.New(whep.Params{SessionParams: rtc.SessionParams{Engine: n.engine, Logger: log}, Hub: n.hub, Pull: pull})
	h := web.New(web.Params{WHIP: n.whip, WHEP: n.whep, Hub: n.hub, Logger: log,
		Auth: web.AuthParams{Mode: web.AuthOff, ClusterKey: clusterKey}})
	n.srv = &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = n.srv.Serve(ln) }()
	n.member.Start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	n.member.Close()
	n.whip.Close()
	if n.puller != nil {
		n.puller.Close()
	}
	n.whep.Close()
	n.hub.Close()
	_ = n.engine.Close()
}

var (
	httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	clientAPI  *webrtc.API
)

// An edge with a Redis directory and no parents: a viewer's WHEP request
// for a stream published on an origin registered in Redis makes the edge
// locate the origin and pull from it; the viewer receives video.
func TestEdgeLocatesOriginInRedis(t *testing.T) {
	rs := clustertest.StartRedis(t)
	dir, err := cluster.NewRedis(rs.URL(), cluster.RedisOptions{Prefix: "e2e:", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()

	origin := startNode(t, dir, cluster.RoleOrigin)
	edge := startNode(t, dir, cluster.RoleEdge)
	if clientAPI == nil {
		if clientAPI, err = rtcclient.LoopbackAPI(nil); err != nil {
			t.Fatal(err)
		}
	}
	opts := rtcclient.Options{API: clientAPI, HTTP: httpClient}
	video, err := clip.LoadH264("../../testdata/clip.h264")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := rtcclient.Publish(ctx, origin.base+"/whip/e2e/cam", opts, rtcclient.H264ConstrainedBaseline, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	pctx, stopPlay := context.WithCancel(ctx)
	played := make(chan struct{})
	go func() {
		defer close(played)
		_ = clip.Play(pctx, video, func(s clip.Sample, _ int) error {
			return pub.WriteVideo(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	defer func() { stopPlay(); <-played }()

	// The origin advertises the stream once it is live.
	testenv.Poll(t, 5*time.Second, func() string {
		n, ok, err := dir.Locate(ctx, "e2e/cam")
		if err == nil && ok && n.URL == origin.base {
			return ""
		}
		return fmt.Sprintf("stream never registered in Redis: %v %v %v", n, ok, err)
	})

	var packets atomic.Int64
	sess, err := rtcclient.Connect(ctx, edge.base+"/whep/e2e/cam", opts, func(pc *webrtc.PeerConnection) error {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				packets.Add(1)
			}
		})
		return nil
	})
	if err != nil {
		t.Fatalf("viewing on the edge: %v", err)
	}
	defer sess.Close(context.Background())
	for packets.Load() < 200 {
		if ctx.Err() != nil {
			t.Fatalf("the edge's viewer got %d packets", packets.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	links := edge.puller.Links()
	if len(links) != 1 || links[0].Parent != origin.base {
		t.Fatalf("edge links: %+v, want one from %s", links, origin.base)
	}
	// The edge does not advertise the stream it relays.
	time.Sleep(500 * time.Millisecond)
	if n, _, _ := dir.Locate(ctx, "e2e/cam"); n.URL != origin.base {
		t.Fatalf("stream now located on %q", n.URL)
	}
	// A stream nobody publishes: 404 at once, from the directory.
	start := time.Now()
	_, err = rtcclient.Connect(ctx, edge.base+"/whep/e2e/none", opts, func(pc *webrtc.PeerConnection) error {
		_, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		return err
	})
	var he *rtcclient.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("missing stream: %v", err)
	}
	t.Logf("viewer on the edge: %d packets; missing stream answered 404 in %v", packets.Load(), time.Since(start).Round(time.Millisecond))
	// The cluster lists both nodes with the edge's viewer.
	for _, n := range edge.member.Nodes(ctx) {
		if n.URL == edge.base && n.Load.Viewers != 1 {
			t.Fatalf("edge load: %+v", n.Load)
		}
	}
}
