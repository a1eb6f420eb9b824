package rtmp

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/egress/rtmp/rtmptest"
	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/frames/framestest"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// rampClip is a 6 s loop that changes resolution the way a browser host
// does at start: 1 s of 320x180, 2 s of 640x360, 3 s of 1280x720, each
// part starting with an IDR and its own SPS/PPS. Three x264 elementary
// streams back to back are one valid H.264 stream with two parameter set
// changes (and a third where the loop wraps). Audio is the shipped clip's.
func rampClip(t *testing.T) *framestest.Clip {
	t.Helper()
	dir := t.TempDir()
	var all []byte
	for i, part := range []struct {
		size string
		secs int
	}{{"320x180", 1}, {"640x360", 2}, {"1280x720", 3}} {
		out := filepath.Join(dir, fmt.Sprintf("part%d.h264", i))
		testenv.MakeWithFFmpeg(t, "-f", "lavfi", "-i", "testsrc2=size="+part.size+":rate=30", "-frames:v", strconv.Itoa(30*part.secs),
			"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
			"-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-x264-params", "repeat-headers=1", "-f", "h264", out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	joined := filepath.Join(dir, "ramp.h264")
	if err := os.WriteFile(joined, all, 0o644); err != nil {
		t.Fatal(err)
	}
	samples, err := clip.LoadH264(joined)
	if err != nil {
		t.Fatal(err)
	}
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	c.Video, c.VDur = nil, nil
	for _, s := range samples {
		var au h264.AnnexB
		if err := au.Unmarshal(s.Data); err != nil {
			t.Fatal(err)
		}
		c.Video = append(c.Video, au)
		c.VDur = append(c.VDur, s.Duration)
	}
	return c
}

// probedFrame is one decoded video frame as ffprobe reports it.
type probedFrame struct {
	key           bool
	pts           float64
	width, height int
}

// probeFrames decodes secs seconds of video from url with ffprobe.
func probeFrames(t *testing.T, url string, secs int) []probedFrame {
	t.Helper()
	ffprobe := testenv.Need(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-rw_timeout", "10000000",
		"-select_streams", "v:0", "-show_entries", "frame=key_frame,pts_time,width,height",
		"-read_intervals", fmt.Sprintf("%%+%d", secs), "-of", "csv=p=0", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", url, err, out)
	}
	var list []probedFrame
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Split(strings.TrimSpace(l), ",")
		if len(f) < 4 {
			continue
		}
		pts, err1 := strconv.ParseFloat(f[1], 64)
		w, err2 := strconv.Atoi(f[2])
		h, err3 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		list = append(list, probedFrame{key: f[0] == "1", pts: pts, width: w, height: h})
	}
	return list
}

// TestPushAcrossResolutionSteps: a publisher that steps its resolution
// (320x180 -> 640x360 -> 1280x720, like a browser host) keeps one
// connection to the server; a player reading it back from nginx-rtmp
// decodes every size.
func TestPushAcrossResolutionSteps(t *testing.T) {
	ng := rtmptest.StartNginx(t)
	f := startPlaying(t, rampClip(t))
	m := f.manager(t, Params{})
	in, err := m.Start("room/cam", "rtmp://"+ng.Addr()+"/live/cam", false)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, in.ID, StateLive, 20*time.Second)
	got := probeFrames(t, "rtmp://"+ng.Addr()+"/live/cam", 9)
	sizes := map[string]int{}
	var order []string
	for _, fr := range got {
		s := fmt.Sprintf("%dx%d", fr.width, fr.height)
		if sizes[s] == 0 {
			order = append(order, s)
		}
		sizes[s]++
	}
	t.Logf("read back %d frames; sizes in order %v: %v", len(got), order, sizes)
	if len(got) < 200 {
		t.Fatalf("decoded %d frames in 9 s, want >= 200", len(got))
	}
	for _, want := range []string{"320x180", "640x360", "1280x720"} {
		if sizes[want] < 10 {
			t.Errorf("%d frames of %s, want the player to decode every size", sizes[want], want)
		}
	}
	in, _ = m.Get(in.ID)
	if in.Reconnects != 0 || in.State != StateLive || in.LastError != "" {
		t.Fatalf("job across resolution steps: %+v, want live with 0 reconnects", in)
	}
	if in.VideoChanges < 3 {
		t.Fatalf("%d in-band parameter changes, want >= 3 in 9 s of a 6 s ramp loop", in.VideoChanges)
	}
}

// TestBackoffResetsAfterCDNBlip: a job whose server was down at first
// backs off (0.5, 1, 2, 4 s ...), but once a connection has worked a 1 s
// blip of the server costs less than 3 s: attempts come every 500 ms
// again. The error shows while it retries and clears when live.
func TestBackoffResetsAfterCDNBlip(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	ng := rtmptest.StartNginx(t)
	ng.Stop()
	f := startClip(t)
	m := f.manager(t, Params{MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second})
	in, err := m.Start("room/cam", "rtmp://"+ng.Addr()+"/live/cam", false)
	if err != nil {
		t.Fatal(err)
	}
	// Attempts 0.5, 1 and 2 s apart: once the fourth has begun the delay
	// has grown to 4 s, so after the server is back only a reset brings
	// the job back within 3 s of the blip below.
	deadline := time.Now().Add(30 * time.Second)
	for {
		in, _ := m.Get(in.ID)
		if in.Reconnects >= 3 {
			if in.LastError == "" {
				t.Fatalf("retrying without an error: %+v", in)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server down: %+v, want >= 3 reconnects", in)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ng.Start()
	live := waitState(t, m, in.ID, StateLive, 15*time.Second)
	if live.LastError != "" {
		t.Fatalf("live with lastError %q, want it cleared", live.LastError)
	}
	time.Sleep(workedFor + 500*time.Millisecond)

	blip := time.Now()
	ng.Stop()
	waitState(t, m, in.ID, StateRetrying, 5*time.Second)
	time.Sleep(time.Second - time.Since(blip))
	ng.Start()
	back := waitState(t, m, in.ID, StateLive, 10*time.Second)
	took := time.Since(blip)
	t.Logf("back live %.2f s after a 1 s blip (reconnects %d)", took.Seconds(), back.Reconnects)
	if took > 3*time.Second {
		t.Fatalf("back live %.1f s after a 1 s blip, want <= 3 s", took.Seconds())
	}
	if back.LastError != "" || !back.ConnectedAt.After(blip) {
		t.Fatalf("after the blip: %+v", back)
	}
	probe(t, "rtmp://"+ng.Addr()+"/live/cam", true)
}

func TestMaskURL(t *testing.T) {
	for raw, want := range map[string]string{
		"rtmp://a.rtmp.youtube.com:1935/live2/abcd-efgh-ijkl-mnop": "rtmp://a.rtmp.youtube.com:1935/live2/****",
		"rtmps://u:pw@live.example.com:443/app/k?auth=secret":      "rtmps://live.example.com:443/app/****",
		"rtmp://cdn:1935/live/x":                                   "rtmp://cdn:1935/live/****",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := maskURL(u); got != want {
			t.Errorf("maskURL(%s) = %s, want %s", raw, got, want)
		}
	}
}
