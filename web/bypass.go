package web

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/egress/hls"
	"github.com/livegate/livegate/egress/rtmp"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/web/auth"
)

// HLSServer is what the HTTP layer needs of egress/hls (*hls.Server).
type HLSServer interface {
	Serve(w http.ResponseWriter, r *http.Request, path, file string) error
}

// EgressAPI is what the HTTP layer needs of egress/rtmp (*rtmp.Manager).
type EgressAPI interface {
	Start(stream, url string, videoOnly bool) (rtmp.Info, error)
	List() []rtmp.Info
	Stop(id string) (rtmp.Info, error)
}

var (
	hlsFile  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	egressID = regexp.MustCompile(`^[0-9a-f]{1,64}$`)
)

// registerBypass adds the CDN bypass routes: live HLS at
// /hls/ROOM/NAME/index.m3u8 (same access as WHEP; a token may be passed as
// ?access_token=, which the playlists carry on), and the RTMP push API
// under /api/v1/egress (admin). Either argument may be nil.
func (s *Server) registerBypass(h HLSServer, egress EgressAPI) {
	e := s.echo
	if h != nil {
		serve := func(c echo.Context) error {
			path, err := streamPath(c)
			if err != nil {
				return err
			}
			file := c.Param("file")
			if !hlsFile.MatchString(file) || strings.HasPrefix(file, ".") {
				return newError(http.StatusNotFound, "not_found", "no such HLS file")
			}
			if _, err := s.authorize(c, auth.ActionRead, auth.ProtoHLS); err != nil {
				return err
			}
			// Blocking playlist requests wait a few seconds before writing;
			// a reader that stops reading is cut off after that.
			_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(s.downloadTimeout(8 << 20)))
			err = h.Serve(c.Response(), c.Request(), path, file)
			switch {
			case errors.Is(err, context.Canceled):
				// The player gave up on a blocking request (it does so
				// routinely when it seeks or stops): nobody to answer.
				return nil
			case errors.Is(err, hls.ErrGap):
				// Some players fetch the gap segments an LL-HLS playlist
				// opens with: answer, but keep them out of the log.
				ae := newError(http.StatusNotFound, "gap_segment", err.Error())
				if c.Request().Method == http.MethodHead {
					return c.NoContent(ae.Status)
				}
				return c.JSON(ae.Status, ae)
			case errors.Is(err, hls.ErrBusy):
				c.Response().Header().Set("Retry-After", "1")
			}
			return hlsError(err)
		}
		e.GET("/hls/:room/:name/:file", serve)
		e.HEAD("/hls/:room/:name/:file", serve)
	}
	if egress != nil {
		e.POST("/api/v1/egress", func(c echo.Context) error {
			if err := s.isAdmin(c); err != nil {
				return err
			}
			var req struct {
				Stream    string `json:"stream"`
				URL       string `json:"url"`
				VideoOnly bool   `json:"videoOnly"`
			}
			if err := decodeJSON(c, 8<<10, &req); err != nil {
				return err
			}
			room, name, ok := strings.Cut(req.Stream, "/")
			if !ok || !relay.ValidName(room) || !relay.ValidName(name) {
				return newError(http.StatusBadRequest, "bad_path", "stream must be ROOM/NAME, each 1-64 characters of A-Z a-z 0-9 _ -")
			}
			in, err := egress.Start(req.Stream, req.URL, req.VideoOnly)
			if err != nil {
				return egressError(err)
			}
			c.Response().Header().Set("Location", "/api/v1/egress/"+in.ID)
			return c.JSON(http.StatusCreated, in)
		})
		e.GET("/api/v1/egress", func(c echo.Context) error {
			if err := s.isAdmin(c); err != nil {
				return err
			}
			return c.JSON(http.StatusOK, map[string]any{"egress": egress.List()})
		})
		e.DELETE("/api/v1/egress/:id", func(c echo.Context) error {
			if err := s.isAdmin(c); err != nil {
				return err
			}
			id := c.Param("id")
			if !egressID.MatchString(id) {
				return egressError(rtmp.ErrNotFound)
			}
			in, err := egress.Stop(id)
			if err != nil {
				return egressError(err)
			}
			return c.JSON(http.StatusOK, in)
		})
	}
}

func hlsError(err error) error {
	switch {
	case err == nil:
		return nil
	case hls.IsNotFound(err):
		return newError(http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, hls.ErrNoH264):
		return newError(http.StatusNotFound, "no_hls_rendition", err.Error())
	case errors.Is(err, hls.ErrStreamEnded):
		return newError(http.StatusNotFound, "stream_ended", err.Error())
	case errors.Is(err, hls.ErrBadRequest):
		return newError(http.StatusBadRequest, "bad_hls_request", err.Error())
	case errors.Is(err, hls.ErrNotReady):
		return newError(http.StatusServiceUnavailable, "not_ready", err.Error())
	case errors.Is(err, hls.ErrBusy):
		return newError(http.StatusServiceUnavailable, "hls_busy", err.Error())
	case errors.Is(err, hls.ErrClosed):
		return newError(http.StatusServiceUnavailable, "shutting_down", err.Error())
	}
	return newError(http.StatusInternalServerError, "hls_error", err.Error())
}

func egressError(err error) error {
	switch {
	case errors.Is(err, rtmp.ErrNotFound):
		return newError(http.StatusNotFound, "egress_not_found", err.Error())
	case errors.Is(err, rtmp.ErrNoStream):
		return newError(http.StatusNotFound, "stream_not_found", err.Error())
	case errors.Is(err, rtmp.ErrBadURL):
		return newError(http.StatusBadRequest, "bad_url", err.Error())
	case errors.Is(err, rtmp.ErrNoTranscoder):
		return newError(http.StatusUnprocessableEntity, "no_transcoder", err.Error())
	case errors.Is(err, rtmp.ErrClosed):
		return newError(http.StatusServiceUnavailable, "shutting_down", err.Error())
	}
	return err
}
