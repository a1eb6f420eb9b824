package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/egress/rtmp/rtmptest"
	"github.com/livegate/livegate/internal/testenv"
)

var needProgram = testenv.Need

// TestBypassHLSAndRTMPPush: a WHIP-published clip is read as LL-HLS (H.264
// + AAC for Safari) by ffprobe and pushed to a real nginx-rtmp, where
// ffprobe finds H.264 + AAC with increasing timestamps; HLS and the push
// share one Opus->AAC transcoder.
func TestBypassHLSAndRTMPPush(t *testing.T) {
	ffprobe := needProgram(t, "ffprobe")
	needProgram(t, "ffmpeg")
	ng := rtmptest.StartNginx(t)
	g := startGateway(t, func(c *Config) { c.HLS = true })
	g.playing(t, "room/cam")

	pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer pcancel()
	out, err := exec.CommandContext(pctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
		"-show_entries", "stream=codec_name,width,height", "-of", "compact", g.base+"/hls/room/cam/index.m3u8").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=h264") || !strings.Contains(string(out), "codec_name=aac") {
		t.Fatalf("ffprobe HLS: %v\n%s", err, out)
	}

	body := `{"stream":"room/cam","url":"rtmp://` + ng.Addr() + `/live/cam"}`
	if res, _ := fetch(t, http.MethodPost, g.base+"/api/v1/egress", body, "Content-Type", "application/json"); res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/egress: %d", res.StatusCode)
	}
	testenv.Poll(t, 20*time.Second, func() string {
		var list struct {
			Egress []struct{ State, LastError string }
		}
		if getJSON(t, g.base+"/api/v1/egress", &list) == http.StatusOK && len(list.Egress) == 1 && list.Egress[0].State == "live" {
			return ""
		}
		return fmt.Sprintf("push not live: %+v", list)
	})
	out, err = exec.CommandContext(pctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
		"-show_entries", "stream=index,codec_name:packet=stream_index,pts_time", "-read_intervals", "%+3",
		"-of", "csv=p=1", "rtmp://"+ng.Addr()+"/live/cam").CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe RTMP: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "h264") || !strings.Contains(s, "aac") {
		t.Fatalf("RTMP codecs: %s", s)
	}
	last := map[string]float64{}
	for _, l := range strings.Split(s, "\n") {
		f := strings.Split(strings.TrimSpace(l), ",")
		if len(f) == 3 && f[0] == "packet" {
			pts, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				continue
			}
			if prev, ok := last[f[1]]; ok && pts <= prev {
				t.Fatalf("stream %s: pts %.3f after %.3f", f[1], pts, prev)
			}
			last[f[1]] = pts
		}
	}
	if n := g.push.Transcodes(); n != 1 {
		t.Errorf("%d Opus->AAC transcoders for HLS and an RTMP push of one stream, want 1", n)
	}
}
