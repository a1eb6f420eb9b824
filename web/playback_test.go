package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/recorder"
	"github.com/livegate/livegate/web/auth"
)

// fakeRecordings has recordings r1 and r2, each with one segment.
type fakeRecordings struct{ RecordingsAPI }

func (fakeRecordings) List(recorder.Filter) []recorder.Info {
	return []recorder.Info{{ID: "r1", Stream: "show/host", Playlist: "/recordings/r1/index.m3u8"},
		{ID: "r2", Stream: "show/host", Playlist: "/recordings/r2/index.m3u8"}}
}

func (f fakeRecordings) Get(id string) (recorder.Info, error) {
	for _, in := range f.List(recorder.Filter{}) {
		if in.ID == id {
			return in, nil
		}
	}
	return recorder.Info{}, recorder.ErrNotFound
}

func (fakeRecordings) Open(_ context.Context, id, name string) (io.ReadCloser, int64, string, error) {
	if id != "r1" && id != "r2" {
		return nil, 0, "", recorder.ErrNotFound
	}
	if name == "index.m3u8" {
		pl := "#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:4.0,\nseg_0.m4s\n#EXT-X-ENDLIST\n"
		return io.NopCloser(strings.NewReader(pl)), int64(len(pl)), "application/vnd.apple.mpegurl", nil
	}
	return io.NopCloser(strings.NewReader("media")), 5, "video/mp4", nil
}

// Found: recording playback accepted an admin token in its URL, because a
// <video> element cannot send a header. The recordings API now hands out a
// playback URL whose token plays back that one recording, read-only, for
// recording-playback-ttl; admin credentials in URLs are refused there as
// everywhere.
func TestPlaybackToken(t *testing.T) {
	const ttl = 10 * time.Minute
	s := newTestServer(t, Params{Auth: AuthParams{Mode: AuthOn, Key: []byte(testSigningKey), AdminKey: testAdminKey},
		Recordings: fakeRecordings{}, PlaybackTokenTTL: ttl})
	const remote = "198.51.100.7:5000"
	admin := map[string]string{"Authorization": "Bearer " + testAdminKey}
	rec := call(s, http.MethodGet, "/api/v1/recordings", remote, "gw", admin, "")
	var list struct {
		Recordings []struct {
			ID                string    `json:"id"`
			PlaybackURL       string    `json:"playbackUrl"`
			PlaybackExpiresAt time.Time `json:"playbackExpiresAt"`
		} `json:"recordings"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); rec.Code != 200 || err != nil || len(list.Recordings) != 2 {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	r1 := list.Recordings[0]
	if d := time.Until(r1.PlaybackExpiresAt); d < ttl-time.Minute || d > ttl {
		t.Errorf("playback URL expires in %v, want %v", d, ttl)
	}
	u, err := url.Parse(r1.PlaybackURL)
	if err != nil || u.Path != "/recordings/r1/index.m3u8" || u.Query().Get("access_token") == "" {
		t.Fatalf("playback URL %q", r1.PlaybackURL)
	}
	tok := u.Query().Get("access_token")
	if one := call(s, http.MethodGet, "/api/v1/recordings/r1", remote, "gw", admin, ""); !strings.Contains(one.Body.String(), `"playbackUrl":"/recordings/r1/index.m3u8?access_token=`) {
		t.Errorf("GET one recording has no playback URL: %s", one.Body)
	}

	// The player, without a header: the playlist, and the segments it names.
	rec = call(s, http.MethodGet, r1.PlaybackURL, remote, "gw", nil, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "seg_0.m4s?access_token="+url.QueryEscape(tok)) ||
		!strings.Contains(rec.Body.String(), `URI="init_0.mp4?access_token=`+url.QueryEscape(tok)+`"`) {
		t.Fatalf("playlist with the playback token: %d %s", rec.Code, rec.Body)
	}
	if rec = call(s, http.MethodGet, "/recordings/r1/seg_0.m4s?access_token="+url.QueryEscape(tok), remote, "gw", nil, ""); rec.Code != 200 {
		t.Fatalf("segment with the playback token: %d %s", rec.Code, rec.Body)
	}
	// Bound to r1 and to playback: nothing else, in the URL or the header.
	for _, tc := range []struct {
		target string
		header bool
		want   int
	}{
		{"/recordings/r2/index.m3u8", false, 403},
		{"/recordings/r2/seg_0.m4s", true, 403},
		{"/api/v1/recordings", true, 403},
		{"/api/v1/recordings/r1", true, 403},
		{"/api/v1/streams", true, 403},
	} {
		target, hdr := tc.target+"?access_token="+url.QueryEscape(tok), map[string]string(nil)
		if tc.header {
			target, hdr = tc.target, map[string]string{"Authorization": "Bearer " + tok}
		}
		if rec := call(s, http.MethodGet, target, remote, "gw", hdr, ""); rec.Code != tc.want {
			t.Errorf("playback token of r1 on %s (header %v): %d %s, want %d", tc.target, tc.header, rec.Code, rec.Body, tc.want)
		}
	}
	if rec := call(s, http.MethodDelete, "/api/v1/recordings/r1", remote, "gw", map[string]string{"Authorization": "Bearer " + tok}, ""); rec.Code != 403 {
		t.Errorf("playback token deleting r1: %d", rec.Code)
	}
	// Expired: refused.
	old, err := auth.MintPlayback([]byte(testSigningKey), "r1", ttl, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rec := call(s, http.MethodGet, "/recordings/r1/index.m3u8?access_token="+old, remote, "gw", nil, ""); rec.Code != 401 {
		t.Errorf("expired playback token: %d", rec.Code)
	}
	// Viewer and publisher tokens do not play recordings back.
	viewer, _ := auth.Mint([]byte(testSigningKey), auth.Request{Room: "show", Identity: "bob", Grants: []string{auth.GrantSubscribe}, TTL: time.Hour}, time.Now())
	if rec := call(s, http.MethodGet, "/recordings/r1/index.m3u8?access_token="+viewer, remote, "gw", nil, ""); rec.Code != 403 {
		t.Errorf("viewer token: %d", rec.Code)
	}
}

// An open gateway (its own machine, no key) plays back without a token.
func TestPlaybackOpen(t *testing.T) {
	s := newTestServer(t, Params{Recordings: fakeRecordings{}})
	rec := call(s, http.MethodGet, "/api/v1/recordings", "127.0.0.1:5000", "127.0.0.1:8080", nil, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"playbackUrl":"/recordings/r1/index.m3u8"`) {
		t.Fatalf("open list: %d %s", rec.Code, rec.Body)
	}
	if rec = call(s, http.MethodGet, "/recordings/r1/index.m3u8", "127.0.0.1:5000", "127.0.0.1:8080", nil, ""); rec.Code != 200 {
		t.Fatalf("open playback: %d %s", rec.Code, rec.Body)
	}
}
