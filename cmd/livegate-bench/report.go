package main

// report is the JSON line printed at the end. Latencies are in
// milliseconds; "steady" excludes each viewer's first second of media.
type report struct {
	URL              string `json:"url"`
	Path             string `json:"path"`
	Published        bool   `json:"published"`
	KeyframeOnPLI    bool   `json:"keyframe_on_pli"`
	NACK             bool   `json:"nack"`
	SRTPReplayWindow uint   `json:"srtp_replay_window"` // 0: pion default (64)
	// Client is the viewers' client: lite or pion. ReceiveTimestamps is
	// what latency samples count arrival as: "kernel" (the time the
	// datagram reached the viewer's socket), "read" (when the tool read
	// it) or "mixed".
	Client            string     `json:"client"`
	ReceiveTimestamps string     `json:"receive_timestamps"`
	ViewersRequested  int        `json:"viewers_requested"`
	ViewersConnected  int        `json:"viewers_connected"`
	ViewersFailed     int        `json:"viewers_failed"`
	ViewersDown       int        `json:"viewers_disconnected_at_end"`
	Errors            []errCount `json:"errors,omitempty"`
	RampS             float64    `json:"ramp_s"`
	WindowS           float64    `json:"window_s"`

	// WHEP POST to 201 answer, and WHEP POST to the first keyframe packet.
	AnswerMs          dist `json:"whep_answer_ms"`
	ConnectMs         dist `json:"connected_ms"` // POST to PeerConnection connected
	TTFFMs            dist `json:"ttff_ms"`
	ViewersNoKeyframe int  `json:"viewers_without_keyframe"`

	// Timing SEI: send time to arrival of the SEI packet; frame: to
	// arrival of the frame's last (marker) packet. steady leaves out each
	// viewer's first second of media (the cached GOP replay); window is
	// steady samples that arrived after the ramp; all is everything.
	LatencySteady      dist `json:"latency_ms_steady"`
	LatencyWindow      dist `json:"latency_ms_window"`
	LatencyAll         dist `json:"latency_ms_all"`
	FrameLatencySteady dist `json:"frame_latency_ms_steady"`
	FrameLatencyWindow dist `json:"frame_latency_ms_window"`
	FrameLatencyAll    dist `json:"frame_latency_ms_all"`

	PacketsReceived  uint64  `json:"packets_received"`
	VideoPackets     uint64  `json:"video_packets"`
	AudioPackets     uint64  `json:"audio_packets"`
	Duplicates       uint64  `json:"duplicate_packets"`
	NACKedPackets    uint64  `json:"nacked_packets"`
	PacketsExpected  uint64  `json:"packets_expected"`
	PacketsLost      uint64  `json:"packets_lost"`
	LossPct          float64 `json:"loss_pct"`
	VideoLossPct     float64 `json:"video_loss_pct"`
	AudioLossPct     float64 `json:"audio_loss_pct"`
	FramesExpected   uint64  `json:"sei_frames_expected"`
	FramesMissing    uint64  `json:"sei_frames_missing"`
	FramesMissingPct float64 `json:"sei_frames_missing_pct"`
	PacketsPerSecond float64 `json:"packets_per_s"`
	BenchCPUCores    float64 `json:"bench_cpu_cores"`
	// The tool's own CPU apart, and all of it per packet received.
	BenchUserCores   float64 `json:"bench_user_cores"`
	BenchKernelCores float64 `json:"bench_kernel_cores"`
	BenchUsPerPacket float64 `json:"bench_us_per_packet"`

	LiteClient    *liteReport    `json:"lite_client,omitempty"`
	HostCPU       *hostReport    `json:"host_cpu,omitempty"`
	Gateway       *gatewayReport `json:"gateway,omitempty"`
	GatewayStream *streamReport  `json:"gateway_stream,omitempty"`
	HostUDP       *udpReport     `json:"host_udp,omitempty"`
	Publisher     *pubReport     `json:"publisher,omitempty"`
	CloseErrors   int64          `json:"close_errors"`
	Aborted       string         `json:"aborted,omitempty"`
}

// hostReport is the machine's CPU use over the window: everything busy,
// time stolen by the hypervisor, and what neither the gateway (if --pid)
// nor the bench used, i.e. other processes competing with the test.
type hostReport struct {
	Cores       int     `json:"cores"`
	BusyCores   float64 `json:"busy_cores"`
	StealCores  float64 `json:"steal_cores"`
	OthersCores float64 `json:"others_cores"`
}

type gatewayReport struct {
	PID                  int     `json:"pid"`
	CPUCores             float64 `json:"cpu_cores"`
	CPUMsPerViewerSecond float64 `json:"cpu_ms_per_viewer_second"`
	RSSMaxMiB            float64 `json:"rss_max_mib"`
	RSSEndMiB            float64 `json:"rss_end_mib"`
	// User and kernel CPU apart, over the window, and per RTP packet the
	// viewers received: user space is what the code controls; the kernel
	// part is mostly the UDP send (on loopback, the receive too).
	UserCores         float64 `json:"user_cores"`
	KernelCores       float64 `json:"kernel_cores"`
	UserUsPerPacket   float64 `json:"user_us_per_packet"`
	KernelUsPerPacket float64 `json:"kernel_us_per_packet"`
	// RSS before the first viewer (stream up) and its growth per viewer at
	// the end of the window.
	RSSBaseMiB     float64 `json:"rss_base_mib"`
	RSSPerViewerKB float64 `json:"rss_per_viewer_kb"`
}

type streamReport struct {
	Viewers        int64          `json:"viewers"`
	BitrateOutMbps float64        `json:"bitrate_out_mbps"`
	Video          *trackCounters `json:"video,omitempty"`
	Audio          *trackCounters `json:"audio,omitempty"`
}

type trackCounters struct {
	PacketsIn        uint64 `json:"packets_in"`
	Dropped          uint64 `json:"dropped"`
	Retransmitted    uint64 `json:"retransmitted"`
	KeyframeRequests uint64 `json:"keyframe_requests"`
	KeyframesAsked   uint64 `json:"keyframes_asked_of_publisher"`
}

// udpReport: host-wide UDP counters over the run, and per-socket receive
// buffer drops of the bench's sockets (over their life) and the gateway's
// (over the run).
type udpReport struct {
	RcvbufErrors       int64  `json:"rcvbuf_errors"`
	SndbufErrors       int64  `json:"sndbuf_errors"`
	InErrors           int64  `json:"in_errors"`
	BenchSocketDrops   int64  `json:"bench_socket_drops"`
	BenchSockets       int    `json:"bench_sockets"`
	GatewaySocketDrops *int64 `json:"gateway_socket_drops,omitempty"`
}

type pubReport struct {
	FramesSent       uint64 `json:"frames_sent"`
	AudioSent        uint64 `json:"audio_sent"`
	WriteErrors      uint64 `json:"write_errors"`
	KeyframeRequests int64  `json:"keyframe_requests"`
}

// liteReport counts what the light clients dropped: datagrams they could
// not use, SRTP that failed to decrypt (replays included), media before
// the keys, DTLS datagrams beyond the handshake queue, and datagrams that
// carried no kernel timestamp.
type liteReport struct {
	BadDatagrams   uint64 `json:"bad_datagrams"`
	SRTPErrors     uint64 `json:"srtp_errors"`
	BeforeKeys     uint64 `json:"media_before_keys"`
	DTLSDropped    uint64 `json:"dtls_dropped"`
	ReadTimestamps uint64 `json:"read_timestamps"`
}
