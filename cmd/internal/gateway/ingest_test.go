package gateway

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// ffmpegTestPattern is a real-time test pattern as H.264 baseline + AAC,
// like the recipes' ff_publish_*.sh.
func ffmpegTestPattern(secs int) []string {
	return []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", strconv.Itoa(secs), "-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-b:v", "800k",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"}
}

// ffmpeg publishes over RTMP and over RTSP into the gateway; WHEP viewers
// get decodable H.264 and Opus audio transcoded from AAC.
func TestRTMPAndRTSPIngestReachWHEP(t *testing.T) {
	ffmpeg := needProgram(t, "ffmpeg")
	g := startGateway(t, func(c *Config) { c.RTMPAddr = "127.0.0.1:0"; c.RTSPAddr = "127.0.0.1:0" })
	for _, tc := range []struct{ name, path, url, format string }{
		{"rtmp", "ingest/rtmpcam", "rtmp://" + g.RTMPAddr().String() + "/ingest/rtmpcam", "flv"},
		{"rtsp", "ingest/rtspcam", "rtsp://" + g.RTSPAddr().String() + "/ingest/rtspcam", "rtsp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append(ffmpegTestPattern(12), "-f", tc.format)
			if tc.format == "rtsp" {
				args = append(args, "-rtsp_transport", "tcp")
			}
			cmd := exec.CommandContext(ctx, ffmpeg, append(args, tc.url)...)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = cmd.Wait() }()
			waitFor(t, 10*time.Second, "the stream live", func() bool {
				st, ok := g.Hub().Get(tc.path)
				return ok && st.Live()
			})
			v := g.view(t, tc.path)
			waitFor(t, 10*time.Second, "frames and audio at the WHEP viewer", func() bool {
				f, a, _ := v.snapshot()
				key := false
				for _, fr := range f {
					key = key || (fr.keyframe() && fr.complete)
				}
				return key && len(f) >= 30 && len(a) >= 50
			})
		})
	}
}
