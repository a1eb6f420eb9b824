package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/recorder"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/web/auth"
)

// RecordingsAPI is what the HTTP layer needs of the recorder
// (*recorder.Manager implements it).
type RecordingsAPI interface {
	Start(path string) (recorder.Info, error)
	Stop(id string) (recorder.Info, error)
	List(f recorder.Filter) []recorder.Info
	Get(id string) (recorder.Info, error)
	Delete(ctx context.Context, id string) error
	Open(ctx context.Context, id, name string) (io.ReadCloser, int64, string, error)
}

var (
	recordingID   = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)
	recordingFile = regexp.MustCompile(`^(index\.m3u8|init_[0-9]+\.mp4|seg_[0-9]+\.m4s)$`)
)

// registerRecordings adds the recording API, HLS VOD playback and the
// /recordings page. Managing and listing recordings needs the admin key or
// grant (or a local client of an open gateway). Playback needs the same in
// the Authorization header, or the playback token that the API hands out
// with each recording (playbackUrl): bound to that recording, read-only and
// short-lived, it may come as ?access_token= because a browser's player
// cannot send a header, and it is carried into the playlist's URIs.
func (s *Server) registerRecordings(m RecordingsAPI) {
	e := s.echo
	e.POST("/api/v1/recordings", s.admin(func(c echo.Context) error {
		var req struct {
			Stream string `json:"stream"`
		}
		if err := decodeJSON(c, 4<<10, &req); err != nil {
			return err
		}
		room, name, ok := strings.Cut(req.Stream, "/")
		if !ok || !relay.ValidName(room) || !relay.ValidName(name) {
			return newError(http.StatusBadRequest, "bad_path", "stream must be ROOM/NAME, each 1-64 characters of A-Z a-z 0-9 _ -")
		}
		in, err := m.Start(req.Stream)
		if err != nil {
			return recordingError(err)
		}
		c.Response().Header().Set("Location", "/api/v1/recordings/"+in.ID)
		return c.JSON(http.StatusCreated, s.recordingView(in))
	}))
	e.GET("/api/v1/recordings", s.admin(func(c echo.Context) error {
		f := recorder.Filter{Stream: c.QueryParam("stream")}
		for _, q := range []struct {
			name string
			dst  *time.Time
		}{{"from", &f.From}, {"to", &f.To}} {
			if v := c.QueryParam(q.name); v != "" {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return newError(http.StatusBadRequest, "bad_time", q.name+" must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
				}
				*q.dst = t
			}
		}
		list := m.List(f)
		views := make([]recordingView, len(list))
		for i, in := range list {
			views[i] = s.recordingView(in)
		}
		return c.JSON(http.StatusOK, map[string]any{"recordings": views})
	}))
	e.GET("/api/v1/recordings/:id", s.admin(func(c echo.Context) error {
		in, err := m.Get(c.Param("id"))
		if err != nil {
			return recordingError(err)
		}
		return c.JSON(http.StatusOK, s.recordingView(in))
	}))
	// DELETE stops a recording; with ?purge=true it also deletes its files.
	e.DELETE("/api/v1/recordings/:id", s.admin(func(c echo.Context) error {
		id := c.Param("id")
		if purge, _ := strconv.ParseBool(c.QueryParam("purge")); purge {
			if err := m.Delete(c.Request().Context(), id); err != nil {
				return recordingError(err)
			}
			return c.NoContent(http.StatusNoContent)
		}
		in, err := m.Stop(id)
		if err != nil {
			return recordingError(err)
		}
		return c.JSON(http.StatusOK, in)
	}))
	e.GET("/recordings/:id/:file", func(c echo.Context) error {
		if _, err := s.authorize(c, auth.ActionPlayback, auth.ProtoAPI); err != nil {
			return err
		}
		id, file := c.Param("id"), c.Param("file")
		if !recordingID.MatchString(id) || !recordingFile.MatchString(file) {
			return newError(http.StatusNotFound, "not_found", "no such recording file")
		}
		rc, size, ctype, err := m.Open(c.Request().Context(), id, file)
		if err != nil {
			return recordingError(err)
		}
		defer rc.Close()
		h := c.Response().Header()
		if file == "index.m3u8" {
			b, err := io.ReadAll(rc)
			if err != nil {
				return err
			}
			h.Set("Cache-Control", "no-cache")
			return c.Blob(http.StatusOK, ctype, withToken(b, c.QueryParam("access_token")))
		}
		// Segments never change once written.
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		// The server has no global write timeout (event streams live
		// long); a client that stops reading a segment must not hold its
		// connection and file open forever.
		_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(s.downloadTimeout(size)))
		return c.Stream(http.StatusOK, ctype, rc)
	})
	e.GET("/recordings", s.page("recordings.html"))
}

// recordingView is a recording as the API shows it: with a playback URL
// that a browser's player can open as it is.
type recordingView struct {
	recorder.Info
	// PlaybackURL is Playlist with a playback token when tokens are in
	// use; it expires at PlaybackExpiresAt (ask the API again for a new
	// one).
	PlaybackURL       string     `json:"playbackUrl"`
	PlaybackExpiresAt *time.Time `json:"playbackExpiresAt,omitempty"`
}

func (s *Server) recordingView(in recorder.Info) recordingView {
	v := recordingView{Info: in, PlaybackURL: in.Playlist}
	if s.policy == nil || !s.policy.CanMint() || in.Playlist == "" {
		return v // an open gateway: its own machine plays without a token
	}
	now := time.Now()
	tok, err := auth.MintPlayback(s.policy.SigningKey(), in.ID, s.p.PlaybackTokenTTL, now)
	if err != nil {
		s.log.Error("cannot sign a playback token", "recording", in.ID, "err", err)
		return v
	}
	exp := now.Add(s.p.PlaybackTokenTTL).UTC()
	v.PlaybackURL, v.PlaybackExpiresAt = in.Playlist+"?access_token="+url.QueryEscape(tok), &exp
	return v
}

// downloadTimeout bounds sending size bytes: a base plus the time at a
// slow but real rate (256 KB/s).
func (s *Server) downloadTimeout(size int64) time.Duration {
	base := s.p.DownloadTimeout
	if base <= 0 {
		base = 30 * time.Second
	}
	return base + time.Duration(size/(256<<10))*time.Second
}

func (s *Server) admin(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.isAdmin(c); err != nil {
			return err
		}
		return h(c)
	}
}

// withToken appends the request's token to the playlist's URIs, which a
// player resolves without the playlist's query string.
func withToken(pl []byte, token string) []byte {
	if token == "" {
		return pl
	}
	q := "?access_token=" + url.QueryEscape(token)
	lines := strings.Split(string(pl), "\n")
	for i, l := range lines {
		switch {
		case l != "" && !strings.HasPrefix(l, "#"):
			lines[i] = l + q
		case strings.HasPrefix(l, `#EXT-X-MAP:URI="`):
			lines[i] = strings.TrimSuffix(l, `"`) + q + `"`
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

func recordingError(err error) error {
	switch {
	case errors.Is(err, recorder.ErrNotFound):
		return newError(http.StatusNotFound, "recording_not_found", err.Error())
	case errors.Is(err, relay.ErrNotFound):
		return newError(http.StatusNotFound, "stream_not_found", err.Error())
	case errors.Is(err, recorder.ErrAlreadyRecording):
		return newError(http.StatusConflict, "already_recording", err.Error())
	case errors.Is(err, recorder.ErrClosed):
		return newError(http.StatusServiceUnavailable, "shutting_down", err.Error())
	}
	return err
}
