// Command livegate-bench loads a livegate gateway on this machine: it
// publishes the test clip over WHIP (with a timing SEI in every video frame),
// opens many WHEP viewers at a fixed rate, and reports time to first
// keyframe, transport latency (publisher send time, carried in the SEI, to
// arrival at each viewer), packet loss and, given the gateway's PID, its CPU
// and memory use.
//
//	go run ./cmd/livegate-bench --viewers 200 --ramp 50 --duration 20s --pid $(pidof livegate)
//
// Progress goes to stderr once a second; the result is one JSON line on
// stdout. It only ever talks to loopback addresses.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"
)

type config struct {
	url            string
	path           string
	viewers        int
	ramp           float64
	duration       time.Duration
	clipPath       string
	audioPath      string
	pid            int
	publish        bool
	timeout        time.Duration
	connectTimeout time.Duration
	nack           bool
	replayWindow   uint
	keyframeOnPLI  bool
	quiet          bool
	settle         time.Duration
	client         string
	cpuProfile     string
}

// The viewer clients: the light one (the default) and pion PeerConnections.
const (
	clientLite = "lite"
	clientPion = "pion"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("livegate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "gateway base URL (loopback only)")
	fs.StringVar(&c.path, "path", "bench/cam", "stream path ROOM/NAME")
	fs.IntVar(&c.viewers, "viewers", 50, "number of WHEP viewers")
	fs.Float64Var(&c.ramp, "ramp", 50, "viewers opened per second")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measurement time after the ramp completes")
	fs.StringVar(&c.clipPath, "clip", "testdata/clip.h264", "H.264 Annex-B clip to publish")
	fs.StringVar(&c.audioPath, "audio", "testdata/clip.ogg", "Ogg Opus clip to publish (empty: no audio)")
	fs.IntVar(&c.pid, "pid", 0, "gateway process ID, to report its CPU and memory (optional)")
	fs.BoolVar(&c.publish, "publish", true, "publish the clip (false: only view an existing stream)")
	fs.DurationVar(&c.timeout, "timeout", 0, "hard bound on the whole run (0: ramp + duration + 60s)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "per session: answer and ICE/DTLS connected within")
	fs.BoolVar(&c.nack, "nack", true, "viewers send NACKs for lost packets, as browsers do")
	fs.UintVar(&c.replayWindow, "srtp-replay-window", 0, "viewers' SRTP replay window in packets (0: 1024, as browsers; pion's own default is 64)")
	fs.BoolVar(&c.keyframeOnPLI, "keyframe-on-pli", false, "publisher answers keyframe requests by skipping to the clip's next keyframe, as an encoder would")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile over the measurement window to this file")
	fs.StringVar(&c.client, "client", clientLite, "viewer client: lite (one socket and one reader per viewer, recvmmsg, kernel receive timestamps) "+
		"or pion (a full PeerConnection per viewer)")
	fs.DurationVar(&c.settle, "settle", 500*time.Millisecond, "how long the stream runs before the first viewer and the base RSS sample "+
		"(25s lets the relay's per-track packet history fill, which rss_per_viewer_kb would otherwise count)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.viewers < 1:
		return c, errors.New("--viewers must be at least 1")
	case c.ramp <= 0:
		return c, errors.New("--ramp must be positive")
	case c.duration <= 0:
		return c, errors.New("--duration must be positive")
	case c.connectTimeout <= 0:
		return c, errors.New("--connect-timeout must be positive")
	case c.settle < 0:
		return c, errors.New("--settle must not be negative")
	case c.timeout < 0:
		return c, errors.New("--timeout must not be negative")
	case c.client != clientLite && c.client != clientPion:
		return c, fmt.Errorf("--client %q: use lite or pion", c.client)
	case strings.Count(strings.Trim(c.path, "/"), "/") != 1:
		return c, fmt.Errorf("--path %q: want ROOM/NAME", c.path)
	}
	c.path = strings.Trim(c.path, "/")
	if c.timeout == 0 {
		c.timeout = c.settle + c.rampTime() + c.duration + 60*time.Second
	}
	return c, nil
}

func (c config) rampTime() time.Duration {
	return time.Duration(float64(c.viewers) / c.ramp * float64(time.Second))
}

// bench is one run.
type bench struct {
	cfg       config
	base      string
	whepURL   string
	transport *http.Transport
	viewerAPI *webrtc.API
	lat       latStore
	start     time.Time

	mu         sync.Mutex
	viewers    []*viewer
	failed     int
	errs       []errCount
	connecting atomic.Int64

	closeErrors atomic.Int64
	nacked      atomic.Uint64
	lite        liteCounters

	rssMaxKB  atomic.Int64
	rssBaseKB int64
}

type errCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

const maxErrorKinds = 10

func (b *bench) fail(err error) {
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failed++
	for i := range b.errs {
		if b.errs[i].Error == msg {
			b.errs[i].Count++
			return
		}
	}
	if len(b.errs) < maxErrorKinds {
		b.errs = append(b.errs, errCount{Error: msg, Count: 1})
	}
}

func (b *bench) connected() []*viewer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*viewer(nil), b.viewers...)
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "livegate-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	base, err := checkLoopbackURL(ctx, cfg.url, net.DefaultResolver.LookupIPAddr)
	if err != nil {
		fmt.Fprintln(stderr, "livegate-bench:", err)
		return 2
	}
	if cfg.pid != 0 {
		if _, err := procCPU(cfg.pid); err != nil {
			fmt.Fprintf(stderr, "livegate-bench: --pid %d: %v\n", cfg.pid, err)
			return 2
		}
	}

	// The hard bound: the run is cancelled at the timeout and reports what
	// it has; if tearing down hangs, the process exits anyway.
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	watchdog := time.AfterFunc(cfg.timeout+15*time.Second, func() {
		fmt.Fprintln(stderr, "livegate-bench: hard timeout, exiting")
		os.Exit(3)
	})
	defer watchdog.Stop()

	b := &bench{cfg: cfg, base: strings.TrimSuffix(base.String(), "/"), transport: newTransport()}
	defer b.transport.CloseIdleConnections()
	b.whepURL = b.base + "/whep/" + cfg.path
	if cfg.client == clientPion {
		if b.viewerAPI, err = viewerAPI(cfg.nack, &b.nacked, cfg.replayWindow); err != nil {
			fmt.Fprintln(stderr, "livegate-bench:", err)
			return 1
		}
	}

	var pub *publisher
	if cfg.publish {
		pub, err = startPublisher(ctx, cfg, b.base+"/whip/"+cfg.path, b.transport)
		if err != nil {
			fmt.Fprintln(stderr, "livegate-bench:", err)
			return 1
		}
		defer pub.stop()
		// Let the gateway see the first keyframe before viewers ask.
		select {
		case <-time.After(cfg.settle):
		case <-ctx.Done():
		}
	}

	rep := b.measure(ctx, stderr)
	if pub != nil {
		rep.Publisher = &pubReport{
			FramesSent: pub.frames.Load(), AudioSent: pub.audio.Load(),
			WriteErrors: pub.errors.Load(), KeyframeRequests: pub.pub.KeyframeRequests.Load(),
		}
	}

	b.closeAll()
	rep.CloseErrors = b.closeErrors.Load()
	line, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintln(stderr, "livegate-bench:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(line))
	switch {
	case rep.ViewersConnected == 0:
		fmt.Fprintln(stderr, "livegate-bench: no viewer connected")
		return 1
	case rep.Aborted != "":
		fmt.Fprintln(stderr, "livegate-bench: aborted:", rep.Aborted)
		return 1
	}
	return 0
}

// measure ramps the viewers up, measures for the duration and returns the
// report. Sessions stay open; closeAll ends them.
func (b *bench) measure(ctx context.Context, stderr io.Writer) *report {
	cfg := b.cfg
	if cfg.pid != 0 {
		// The gateway's memory with the stream up and no viewer yet: what
		// viewers add is measured against it.
		if kb, err := procRSS(cfg.pid); err == nil {
			b.rssBaseKB = kb
		}
	}
	b.start = time.Now()
	udp0, _ := udpStats()
	gwDrops0, _, gwErr0 := int64(0), 0, error(nil)
	if cfg.pid != 0 {
		gwDrops0, _, gwErr0 = udpSocketDrops(cfg.pid)
	}

	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go func() {
		defer close(progressStopped)
		b.progress(progressDone, stderr)
	}()

	// Ramp: viewer i is started at i/ramp seconds, whether or not the
	// earlier ones are connected yet.
	var ramp sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.ramp)
	timer := time.NewTimer(0)
	defer timer.Stop()
launch:
	for i := range cfg.viewers {
		timer.Reset(time.Until(b.start.Add(time.Duration(i) * interval)))
		select {
		case <-ctx.Done():
			break launch
		case <-timer.C:
		}
		ramp.Add(1)
		b.connecting.Add(1)
		go func() {
			defer ramp.Done()
			defer b.connecting.Add(-1)
			v, err := b.openViewer(ctx, i)
			if err != nil {
				b.fail(err)
				return
			}
			b.mu.Lock()
			b.viewers = append(b.viewers, v)
			b.mu.Unlock()
		}()
	}
	ramp.Wait()

	// Measurement window.
	winStart := time.Now()
	host0, hostErr0 := readHostCPU()
	gw0 := b.gatewayCPU()
	gwUser0, gwSys0, _ := procCPUSplit(cfg.pid)
	selfUser0, selfSys0 := selfCPUSplit()
	self0 := selfUser0 + selfSys0
	if cfg.cpuProfile != "" {
		if f, err := os.Create(cfg.cpuProfile); err != nil {
			fmt.Fprintln(stderr, "livegate-bench: --cpuprofile:", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "livegate-bench: --cpuprofile:", err)
			f.Close()
		} else {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	pkts0 := b.packets()
	atStart := len(b.connected())
	aborted := ""
	select {
	case <-ctx.Done():
		aborted = context.Cause(ctx).Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			aborted = fmt.Sprintf("--timeout %v reached", cfg.timeout)
		}
	case <-time.After(cfg.duration):
	}
	winEnd := time.Now()
	host1, hostErr1 := readHostCPU()
	gw1 := b.gatewayCPU()
	gwUser1, gwSys1, gwSplitErr := procCPUSplit(cfg.pid)
	selfUser1, selfSys1 := selfCPUSplit()
	self1 := selfUser1 + selfSys1
	pkts1 := b.packets()
	udp1, _ := udpStats()
	benchDrops, benchSockets, benchErr := udpSocketDrops(os.Getpid())
	var gwDrops1 int64
	var gwErr1 error
	if cfg.pid != 0 {
		gwDrops1, _, gwErr1 = udpSocketDrops(cfg.pid)
	}
	close(progressDone)
	<-progressStopped

	window := winEnd.Sub(winStart)
	rep := &report{
		URL: b.base, Path: cfg.path, Published: cfg.publish,
		KeyframeOnPLI: cfg.keyframeOnPLI && cfg.publish, NACK: cfg.nack, SRTPReplayWindow: cfg.replayWindow,
		ViewersRequested: cfg.viewers, RampS: round3(winStart.Sub(b.start).Seconds()),
		WindowS: round3(window.Seconds()), Aborted: aborted,
		Client: cfg.client, ReceiveTimestamps: "read",
	}
	b.mu.Lock()
	rep.ViewersFailed, rep.Errors = b.failed, append([]errCount(nil), b.errs...)
	b.mu.Unlock()
	if window > 0 {
		rep.PacketsPerSecond = round3(float64(pkts1-pkts0) / window.Seconds())
		rep.BenchCPUCores = round3(float64(self1-self0) / float64(window))
		rep.BenchUserCores = round3(float64(selfUser1-selfUser0) / float64(window))
		rep.BenchKernelCores = round3(float64(selfSys1-selfSys0) / float64(window))
		if pkts := pkts1 - pkts0; pkts > 0 {
			rep.BenchUsPerPacket = round3(float64(self1-self0) / float64(time.Microsecond) / float64(pkts))
		}
		if hostErr0 == nil && hostErr1 == nil {
			rep.HostCPU = &hostReport{
				Cores:       runtime.NumCPU(),
				BusyCores:   round3(float64(host1.busy-host0.busy) / float64(window)),
				StealCores:  round3(float64(host1.steal-host0.steal) / float64(window)),
				OthersCores: round3(float64(host1.busy-host0.busy-(self1-self0)) / float64(window)),
			}
			if gw0 >= 0 && gw1 >= 0 {
				rep.HostCPU.OthersCores = round3(float64(host1.busy-host0.busy-(self1-self0)-(gw1-gw0)) / float64(window))
			}
		}
	}
	if udp0 != nil && udp1 != nil {
		rep.HostUDP = &udpReport{
			RcvbufErrors: udp1["RcvbufErrors"] - udp0["RcvbufErrors"],
			SndbufErrors: udp1["SndbufErrors"] - udp0["SndbufErrors"],
			InErrors:     udp1["InErrors"] - udp0["InErrors"],
		}
		if benchErr == nil {
			rep.HostUDP.BenchSocketDrops, rep.HostUDP.BenchSockets = benchDrops, benchSockets
		}
		if cfg.pid != 0 && gwErr0 == nil && gwErr1 == nil {
			d := gwDrops1 - gwDrops0
			rep.HostUDP.GatewaySocketDrops = &d
		}
	}
	rep.NACKedPackets = b.nacked.Load()
	if cfg.client == clientLite {
		rep.LiteClient = &liteReport{
			BadDatagrams: b.lite.bad.Load(), SRTPErrors: b.lite.srtp.Load(), BeforeKeys: b.lite.early.Load(),
			DTLSDropped: b.lite.dtlsDrop.Load(), ReadTimestamps: b.lite.readTS.Load(),
		}
	}

	var (
		answer, connect, ttff    []float64
		video, audio             seqTracker // sums only
		vExp, vLost, aExp, aLost uint64
		seiExp, seiGot           uint64
		noKey, kernelTS          int
	)
	for _, v := range b.connected() {
		rep.ViewersConnected++
		if !v.conn.up() {
			rep.ViewersDown++
		}
		if lc, ok := v.conn.(*liteConn); ok && lc.kernelTS {
			kernelTS++
		}
		st := v.snapshot()
		answer = append(answer, ms(v.answerAt.Sub(v.postAt)))
		connect = append(connect, ms(v.connectedAt.Sub(v.postAt)))
		if st.firstKey.IsZero() {
			noKey++
		} else {
			ttff = append(ttff, ms(st.firstKey.Sub(v.postAt)))
		}
		video.received += st.video.received
		video.duplicates += st.video.duplicates
		audio.received += st.audio.received
		audio.duplicates += st.audio.duplicates
		vExp += st.video.expected()
		vLost += st.video.lost()
		aExp += st.audio.expected()
		aLost += st.audio.lost()
		if st.haveSEI {
			seiExp += uint64(st.seiMax-st.seiFirst) + 1
			seiGot += st.seiFrames
		}
	}
	rep.ViewersNoKeyframe = noKey
	switch {
	case kernelTS == 0:
	case kernelTS == rep.ViewersConnected && rep.LiteClient.ReadTimestamps == 0:
		rep.ReceiveTimestamps = "kernel"
	default:
		rep.ReceiveTimestamps = "mixed"
	}
	rep.AnswerMs = summarize(answer)
	rep.ConnectMs = summarize(connect)
	rep.TTFFMs = summarize(ttff)

	b.lat.mu.Lock()
	seiAll, seiSteady, seiWindow := split(b.lat.sei, winStart.UnixNano(), winEnd.UnixNano())
	frameAll, frameSteady, frameWindow := split(b.lat.frame, winStart.UnixNano(), winEnd.UnixNano())
	b.lat.mu.Unlock()
	rep.LatencySteady = summarize(seiSteady)
	rep.LatencyWindow = summarize(seiWindow)
	rep.FrameLatencyWindow = summarize(frameWindow)
	rep.LatencyAll = summarize(seiAll)
	rep.FrameLatencySteady = summarize(frameSteady)
	rep.FrameLatencyAll = summarize(frameAll)

	rep.VideoPackets, rep.AudioPackets = video.received, audio.received
	rep.PacketsReceived = video.received + audio.received
	rep.Duplicates = video.duplicates + audio.duplicates
	rep.PacketsExpected = vExp + aExp
	rep.PacketsLost = vLost + aLost
	rep.LossPct = pct(vLost+aLost, vExp+aExp)
	rep.VideoLossPct = pct(vLost, vExp)
	rep.AudioLossPct = pct(aLost, aExp)
	rep.FramesExpected = seiExp
	if seiExp > seiGot {
		rep.FramesMissing = seiExp - seiGot
	}
	rep.FramesMissingPct = pct(rep.FramesMissing, seiExp)

	if cfg.pid != 0 {
		g := &gatewayReport{PID: cfg.pid, RSSMaxMiB: round3(float64(b.rssMaxKB.Load()) / 1024)}
		if rss, err := procRSS(cfg.pid); err == nil {
			g.RSSEndMiB = round3(float64(rss) / 1024)
		}
		if gw0 >= 0 && gw1 >= 0 && window > 0 {
			cpu := gw1 - gw0
			g.CPUCores = round3(float64(cpu) / float64(window))
			if atStart > 0 {
				g.CPUMsPerViewerSecond = round3(ms(cpu) / (float64(atStart) * window.Seconds()))
			}
		}
		if gwSplitErr == nil && window > 0 {
			g.UserCores = round3(float64(gwUser1-gwUser0) / float64(window))
			g.KernelCores = round3(float64(gwSys1-gwSys0) / float64(window))
			if delivered := pkts1 - pkts0; delivered > 0 {
				g.UserUsPerPacket = round3(float64(gwUser1-gwUser0) / float64(time.Microsecond) / float64(delivered))
				g.KernelUsPerPacket = round3(float64(gwSys1-gwSys0) / float64(time.Microsecond) / float64(delivered))
			}
		}
		if rss, err := procRSS(cfg.pid); err == nil && b.rssBaseKB > 0 && atStart > 0 {
			g.RSSBaseMiB = round3(float64(b.rssBaseKB) / 1024)
			g.RSSPerViewerKB = round3(float64(rss-b.rssBaseKB) / float64(atStart))
		}
		rep.Gateway = g
	}
	rep.GatewayStream = b.streamStats()
	return rep
}
