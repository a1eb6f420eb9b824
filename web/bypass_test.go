package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/egress/hls"
	"github.com/livegate/livegate/egress/rtmp"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
)

func TestBypassRoutes(t *testing.T) {
	hub := relay.NewHub(relay.Params{Workers: 1})
	defer hub.Close()
	c, err := framestest.Load("../testdata")
	if err != nil {
		t.Fatal(err)
	}
	_, stop, err := c.Start(hub, "room/cam")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	fl := frames.New(frames.Params{})
	hs := hls.New(hls.Params{Hub: hub, Frames: fl})
	defer hs.Close()
	rm := rtmp.New(rtmp.Params{Hub: hub, Frames: fl, FFmpeg: "-", MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	defer rm.Close()
	s := New(Params{Hub: hub, Auth: AuthParams{Mode: AuthAuto}, HLS: hs, Egress: rm})

	do := func(method, target, body, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.RemoteAddr = remote
		req.Host = "127.0.0.1:8080" // what a browser on this machine sends
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}
	const local, remote = "127.0.0.1:5000", "192.0.2.1:5000"

	if rec := do("GET", "/hls/room/cam/index.m3u8", "", local); rec.Code != 200 || !strings.Contains(rec.Body.String(), "#EXTM3U") {
		t.Fatalf("HLS playlist: %d %s", rec.Code, rec.Body)
	}
	if rec := do("GET", "/hls/room/cam/index.m3u8", "", remote); rec.Code != http.StatusUnauthorized {
		t.Fatalf("HLS without a token from afar: %d", rec.Code)
	}
	if rec := do("GET", "/hls/room/other/index.m3u8", "", local); rec.Code != 404 {
		t.Fatalf("HLS of a missing stream: %d", rec.Code)
	}
	// Every HLS error is JSON with a code.
	for target, want := range map[string]struct {
		status int
		code   string
	}{
		"/hls/room/other/index.m3u8":                          {404, "not_found"},
		"/hls/room/cam/gap.mp4":                               {404, "gap_segment"},
		"/hls/room/cam/nope_video1_seg3.mp4":                  {404, "not_found"},
		"/hls/room/cam/video1_stream.m3u8?_HLS_part=2":        {400, "bad_hls_request"},
		"/hls/room/cam/video1_stream.m3u8?_HLS_msn=x":         {400, "bad_hls_request"},
		"/hls/room/cam/video1_stream.m3u8?_HLS_msn=999999999": {400, "bad_hls_request"},
	} {
		rec := do("GET", target, "", local)
		var e struct{ Code, Error string }
		if rec.Code != want.status || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != want.code || e.Error == "" {
			t.Errorf("GET %s: %d %q, want %d with JSON code %s", target, rec.Code, rec.Body, want.status, want.code)
		}
	}
	// A player that gives up on a blocking reload gets nothing (and no
	// error is logged).
	pl := do("GET", "/hls/room/cam/video1_stream.m3u8", "", local).Body.String()
	next := strings.Count(pl, "#EXTINF") + strings.Count(pl, "#EXT-X-SKIP") // segments from 0
	if m := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(pl); m != nil {
		n, _ := strconv.Atoi(m[1])
		next += n
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req := httptest.NewRequestWithContext(cctx, "GET", fmt.Sprintf("/hls/room/cam/video1_stream.m3u8?_HLS_msn=%d&_HLS_part=40", next), nil)
	req.RemoteAddr, req.Host = local, "127.0.0.1:8080"
	crec := httptest.NewRecorder()
	s.Handler().ServeHTTP(crec, req)
	ccancel()
	if crec.Body.Len() != 0 {
		t.Errorf("cancelled blocking reload answered %d %q", crec.Code, crec.Body)
	}

	if rec := do("POST", "/api/v1/egress", `{"stream":"room/cam","url":"rtmp://127.0.0.1:1/live/k"}`, remote); rec.Code != http.StatusUnauthorized {
		t.Fatalf("egress without admin: %d", rec.Code)
	}
	if rec := do("POST", "/api/v1/egress", `{"stream":"room/cam","url":"rtmp://127.0.0.1:1/live/k"}`, local); rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("egress with audio and no ffmpeg: %d %s", rec.Code, rec.Body)
	}
	if rec := do("POST", "/api/v1/egress", `{"stream":"room/cam","url":"http://x/y","videoOnly":true}`, local); rec.Code != 400 {
		t.Fatalf("bad url: %d", rec.Code)
	}
	if rec := do("POST", "/api/v1/egress", `{"stream":"room/none","url":"rtmp://127.0.0.1:1/live/k","videoOnly":true}`, local); rec.Code != 404 {
		t.Fatalf("missing stream: %d", rec.Code)
	}
	rec := do("POST", "/api/v1/egress", `{"stream":"room/cam","url":"rtmp://127.0.0.1:1/live/k","videoOnly":true}`, local)
	var in rtmp.Info
	if rec.Code != 201 || json.Unmarshal(rec.Body.Bytes(), &in) != nil || in.ID == "" {
		t.Fatalf("start: %d %s", rec.Code, rec.Body)
	}
	rec = do("GET", "/api/v1/egress", "", local)
	var list struct{ Egress []rtmp.Info }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list.Egress) != 1 {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	if rec := do("DELETE", "/api/v1/egress/"+in.ID, "", local); rec.Code != 200 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if rec := do("DELETE", "/api/v1/egress/"+in.ID, "", local); rec.Code != 404 {
		t.Fatalf("delete again: %d", rec.Code)
	}
}
