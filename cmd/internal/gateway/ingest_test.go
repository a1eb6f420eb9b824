package gateway

import (
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

// ffmpeg publishes over RTMP and over RTSP into the gateway; WHEP viewers
// get decodable H.264 and Opus audio transcoded from AAC.
func TestRTMPAndRTSPIngestReachWHEP(t *testing.T) {
	needProgram(t, "ffmpeg")
	g := startGateway(t, func(c *Config) { c.RTMPAddr = "127.0.0.1:0"; c.RTSPAddr = "127.0.0.1:0" })
	for _, tc := range []struct{ name, path, url, format string }{
		{"rtmp", "ingest/rtmpcam", "rtmp://" + g.RTMPAddr().String() + "/ingest/rtmpcam", "flv"},
		{"rtsp", "ingest/rtspcam", "rtsp://" + g.RTSPAddr().String() + "/ingest/rtspcam", "rtsp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(testenv.TestPattern(12), "-f", tc.format)
			if tc.format == "rtsp" {
				args = append(args, "-rtsp_transport", "tcp")
			}
			stop := testenv.StartFFmpeg(t, append(args, tc.url)...)
			defer stop()
			g.waitStreamLive(t, 10*time.Second, tc.path)
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
