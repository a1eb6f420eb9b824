package hls

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/frames"
)

// TestPublisherPauseKeepsAACInStep: with the AAC rendition, audio goes on
// after a publisher's pause in step with the video, whether the
// transcoder fills the pause with silence (up to 10 s) or not: every
// segment after the gap has as much audio as video, starting together.
func TestPublisherPauseKeepsAACInStep(t *testing.T) {
	ffprobe := testenv.Need(t, "ffprobe")
	testenv.Need(t, "ffmpeg")
	for _, pause := range []time.Duration{4 * time.Second, 11 * time.Second} {
		t.Run(pause.String(), func(t *testing.T) {
			fl := frames.New(frames.Params{Logger: testLogger()})
			tc := aac.New(aac.Params{Frames: fl, Logger: testLogger()})
			f, sp := startStalling(t, Params{Frames: fl, AAC: tc})
			if res, body := get(t, f.base+"/hls/room/cam/index.m3u8"); res.StatusCode != 200 || !strings.Contains(body, "mp4a") {
				t.Fatalf("index.m3u8: %d %s", res.StatusCode, body)
			}
			time.Sleep(3300 * time.Millisecond)
			sp.pause()
			time.Sleep(pause)
			sp.resume()
			time.Sleep(7 * time.Second)
			_, video := get(t, f.base+"/hls/room/cam/video1_stream.m3u8")
			_, audio := get(t, f.base+"/hls/room/cam/audio2_stream.m3u8")
			// The segments after the discontinuity, but the first (it may
			// start with the video's keyframe wait).
			i := strings.LastIndex(video, "#EXT-X-DISCONTINUITY\n")
			if i < 0 {
				t.Fatalf("no discontinuity after the pause:\n%s", video)
			}
			segs := regexp.MustCompile(`(?m)^([0-9a-f]+_video1_seg(\d+)\.mp4)$`).FindAllStringSubmatch(video[i:], -1)
			if len(segs) < 3 {
				t.Fatalf("%d segments after the gap:\n%s", len(segs), video)
			}
			dir := t.TempDir()
			fetch := func(pl, name string) string {
				init := regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`).FindStringSubmatch(pl)[1]
				var data []byte
				for _, f2 := range []string{init, name} {
					_, b := get(t, f.base+"/hls/room/cam/"+f2)
					data = append(data, b...)
				}
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			span := func(p string) (first, dur float64) {
				out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", p).CombinedOutput()
				if err != nil {
					t.Fatalf("ffprobe %s: %v %s", p, err, out)
				}
				first = -1
				for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					var pts, d float64
					if _, err := fmt.Sscanf(strings.ReplaceAll(l, ",", " "), "%g %g", &pts, &d); err != nil {
						continue
					}
					if first < 0 {
						first = pts
					}
					dur += d
				}
				return first, dur
			}
			for _, s := range segs[1 : len(segs)-1] {
				n, _ := strconv.Atoi(s[2])
				aname := regexp.MustCompile(`(?m)^[0-9a-f]+_audio2_seg` + strconv.Itoa(n) + `\.mp4$`).FindString(audio)
				if aname == "" {
					t.Fatalf("no audio segment %d:\n%s", n, audio)
				}
				vf, vd := span(fetch(video, s[1]))
				af, ad := span(fetch(audio, aname))
				t.Logf("segment %d: video %.3f+%.3f, audio %.3f+%.3f", n, vf, vd, af, ad)
				if ad < vd*0.8 || abs(af-vf) > 0.2 {
					t.Errorf("segment %d after the gap: video from %.3f s for %.3f s, audio from %.3f s for %.3f s", n, vf, vd, af, ad)
				}
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
