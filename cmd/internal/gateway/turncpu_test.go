package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
	"github.com/livegate/livegate/relay/turn"
)

// TestTURNRelayCPU measures what a viewer relayed by the built-in TURN
// server (over TCP) costs the gateway's process, against a direct UDP
// viewer. It runs the livegate binary (so only the gateway's CPU is
// counted) and takes about a minute: set LIVEGATE_MEASURE_TURN=1.
func TestTURNRelayCPU(t *testing.T) {
	if os.Getenv("LIVEGATE_MEASURE_TURN") == "" {
		t.Skip("a measurement, not a test: set LIVEGATE_MEASURE_TURN=1")
	}
	const viewers, window, secret = 30, 10 * time.Second, "measure-secret"
	bin := filepath.Join(t.TempDir(), "livegate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../livegate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpAddr, mediaAddr, turnAddr := freeTCP(t), freeTCP(t), freeTCP(t)
	cmd := exec.Command(bin, "--http", httpAddr, "--webrtc-udp", mediaAddr, "--webrtc-ips", "127.0.0.1",
		"--turn-tcp", turnAddr, "--turn-secret", secret, "--record-dir", t.TempDir(), "--record-spool", t.TempDir(),
		"--rtmp-addr", "", "--rtsp-addr", "", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + httpAddr
	waitFor(t, 10*time.Second, "livegate up", func() bool {
		r, err := http.Get(base + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := rtcclient.Publish(ctx, base+"/whip/cpu/cam", clientOpts(t), rtcclient.H264ConstrainedBaseline, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	c := loadClip(t)
	go func() {
		_ = clip.Play(ctx, c.video, func(s clip.Sample, _ int) error {
			return pub.WriteVideo(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	time.Sleep(time.Second)
	cpu := func() time.Duration { return procCPU(t, cmd.Process.Pid) }
	measure := func(what string, servers []webrtc.ICEServer, policy webrtc.ICETransportPolicy) float64 {
		var pcs []*webrtc.PeerConnection
		var got []*atomic.Int64
		for range viewers {
			pc, n := cpuViewer(t, base+"/whep/cpu/cam", servers, policy)
			pcs, got = append(pcs, pc), append(got, n)
		}
		time.Sleep(time.Second)
		c0 := cpu()
		time.Sleep(window)
		used := cpu() - c0
		for i, pc := range pcs {
			if got[i].Load() == 0 {
				t.Errorf("%s viewer %d received nothing", what, i)
			}
			_ = pc.Close()
		}
		time.Sleep(time.Second)
		return used.Seconds() / window.Seconds()
	}
	c0 := cpu()
	time.Sleep(window)
	idle := (cpu() - c0).Seconds() / window.Seconds()
	direct := measure("direct", nil, webrtc.ICETransportPolicyAll)
	user, pass := turn.Credentials(secret, "cpu", time.Hour, time.Now())
	relayed := measure("TURN", []webrtc.ICEServer{{URLs: []string{"turn:" + turnAddr + "?transport=tcp"}, Username: user, Credential: pass}},
		webrtc.ICETransportPolicyRelay)
	perDirect := (direct - idle) / viewers
	perRelayed := (relayed - idle) / viewers
	t.Logf("gateway CPU (cores): publisher only %.4f; %d direct UDP viewers %.4f (%.4f each); %d TURN/TCP viewers %.4f (%.4f each, %.2fx)",
		idle, viewers, direct, perDirect, viewers, relayed, perRelayed, perRelayed/perDirect)
}

func freeTCP(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procCPU is the user+system CPU time of a process.
func procCPU(t *testing.T, pid int) time.Duration {
	f, err := os.Open(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	fields := strings.Fields(line[strings.LastIndexByte(line, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// cpuViewer plays endpoint and counts the RTP packets it receives.
func cpuViewer(t *testing.T, endpoint string, servers []webrtc.ICEServer, policy webrtc.ICETransportPolicy) (*webrtc.PeerConnection, *atomic.Int64) {
	t.Helper()
	api := clientOpts(t).API
	if len(servers) > 0 {
		api = tcpOnlyOpts(t).API // reaches the TURN server over TCP
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: servers, ICETransportPolicy: policy})
	if err != nil {
		t.Fatal(err)
	}
	n := new(atomic.Int64)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				n.Add(1)
			}
		}()
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	res, err := http.Post(endpoint, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP %d: %s", res.StatusCode, body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc, n
}
