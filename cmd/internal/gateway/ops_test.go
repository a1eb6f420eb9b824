package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/web/webhooks"
)

// A WHIP-published stream is recorded on request and plays back as HLS VOD
// through the gateway; ffprobe reads it with the expected duration.
func TestRecordWebRTCStream(t *testing.T) {
	ffprobe := needProgram(t, "ffprobe")
	var mu sync.Mutex
	var events []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		events = append(events, r.Header.Get(webhooks.HeaderEvent))
		mu.Unlock()
	}))
	defer hook.Close()
	g := startGateway(t, func(c *Config) {
		c.RecorderParams.SegmentDuration = 2 * time.Second
		c.WebhookParams.URLs = []string{hook.URL}
	})
	g.playing(t, "rec/cam")

	resp, body := post(t, g.base+"/api/v1/recordings", "application/json", `{"stream":"rec/cam"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("start recording: %d %v", resp.StatusCode, body)
	}
	id, _ := body["id"].(string)
	time.Sleep(7 * time.Second)
	resp, body = request(t, http.MethodDelete, g.base+"/api/v1/recordings/"+id, "", "")
	if resp.StatusCode/100 != 2 {
		t.Fatalf("stop recording: %d %v", resp.StatusCode, body)
	}
	var dur float64
	waitFor(t, 15*time.Second, "a complete, playable recording", func() bool {
		out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
			g.base+"/recordings/"+id+"/index.m3u8").Output()
		if err != nil {
			return false
		}
		dur, err = strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		return err == nil && dur > 0
	})
	t.Logf("recorded %.2f s", dur)
	if dur < 4 || dur > 8.5 {
		t.Fatalf("recording lasts %.2f s, want about 7", dur)
	}
	waitFor(t, 10*time.Second, "the recording.finished webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(events, ","), webhooks.RecordingFinished)
	})
	resp, body = request(t, http.MethodGet, g.base+"/api/v1/recordings?stream=rec/cam", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(func() string { b, _ := json.Marshal(body); return string(b) }(), id) {
		t.Fatalf("list: %d %v", resp.StatusCode, body)
	}
}

// /metrics exposes stream and session gauges; webhooks report the stream
// and its room, signed.
func TestMetricsAndWebhooks(t *testing.T) {
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get(webhooks.HeaderSignature) != webhooks.Sign("hook-secret", r.Header.Get(webhooks.HeaderTimestamp), b) {
			t.Errorf("bad webhook signature")
		}
		mu.Lock()
		got = append(got, r.Header.Get(webhooks.HeaderEvent))
		mu.Unlock()
	}))
	defer hook.Close()
	g := startGateway(t, func(c *Config) {
		c.WebhookParams.URLs = []string{hook.URL}
		c.WebhookParams.Secret = "hook-secret"
		c.Grace = 300 * time.Millisecond
	})
	pub := g.publish(t, "ops/cam")
	v := g.view(t, "ops/cam")
	waitConnected(t, v.PC)
	st, _ := g.Hub().Get("ops/cam")
	waitFor(t, 5*time.Second, "viewer attached", func() bool { return st.Viewers() == 1 })

	b := g.metricsPage(t)
	for _, want := range []string{`livegate_stream_viewers{stream="ops/cam"} 1`, "livegate_publisher_sessions 1",
		"livegate_viewer_sessions 1", `livegate_streams{state="live"} 1`, "livegate_http_request_duration_seconds_bucket"} {
		if !strings.Contains(b, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	_ = pub.Close(context.Background())
	waitFor(t, 5*time.Second, "webhooks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 4
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "room.opened,stream.started,stream.ended,room.closed" {
		t.Fatalf("webhooks %v", got)
	}
}
