package web

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/egress/composite"
	"github.com/livegate/livegate/egress/rtmp"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/web/auth"
)

// CompositeAPI is what the HTTP layer needs of egress/composite
// (*composite.Manager).
type CompositeAPI interface {
	Start(room string, o composite.Options) (composite.Info, bool, error)
	Stop(room string) (composite.Info, error)
	Get(room string) (composite.Info, error)
	List() []composite.Info
}

// compositeRequest is the body of POST /api/v1/rooms/ROOM/composite.
// Size is "WIDTHxHEIGHT" as an alternative to width and height.
type compositeRequest struct {
	Layout       string `json:"layout"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	FPS          int    `json:"fps"`
	VideoBitrate int    `json:"videoBitrate"`
	AudioBitrate int    `json:"audioBitrate"`
	Speaker      string `json:"speaker"`
	Name         string `json:"name"`
}

// compositeView is GET /api/v1/rooms/ROOM/composite: the composite and
// the RTMP pushes of its stream (stream keys masked), so that a host sees
// whether the show goes out and where.
type compositeView struct {
	composite.Info
	Pushes []rtmp.Info `json:"pushes"`
}

// registerComposite adds the room composite API: POST starts a room's
// composite or changes its layout, DELETE stops it (admin); GET shows it
// to anyone who may read the room (its hosts). egress, if not nil, lists
// the pushes of the composite stream.
func (s *Server) registerComposite(api CompositeAPI, egress EgressAPI) {
	e := s.echo
	room := func(c echo.Context) (string, error) {
		if err := s.isAdmin(c); err != nil {
			return "", err
		}
		r := c.Param("room")
		if !relay.ValidName(r) {
			return "", newError(http.StatusBadRequest, "bad_path", "room must be 1-64 characters of A-Z a-z 0-9 _ -")
		}
		return r, nil
	}
	e.POST("/api/v1/rooms/:room/composite", func(c echo.Context) error {
		r, err := room(c)
		if err != nil {
			return err
		}
		var req compositeRequest
		if c.Request().ContentLength != 0 {
			if err := decodeJSON(c, 8<<10, &req); err != nil {
				return err
			}
		}
		in, created, err := api.Start(r, composite.Options{Layout: composite.Layout(req.Layout), Width: req.Width, Height: req.Height,
			FPS: req.FPS, VideoBitrate: req.VideoBitrate, AudioBitrate: req.AudioBitrate, Speaker: req.Speaker, Name: req.Name})
		if err != nil {
			return compositeError(err)
		}
		if !created {
			return c.JSON(http.StatusOK, in)
		}
		c.Response().Header().Set("Location", "/api/v1/rooms/"+r+"/composite")
		return c.JSON(http.StatusCreated, in)
	})
	e.GET("/api/v1/rooms/:room/composite", func(c echo.Context) error {
		r, err := roomParam(c)
		if err != nil {
			return err
		}
		d, err := s.authorize(c, auth.ActionRoom, auth.ProtoAPI)
		if err != nil {
			return err
		}
		in, err := api.Get(r)
		if errors.Is(err, composite.ErrNotFound) {
			// Not an error for the pages that poll it: the room is simply
			// not composited now.
			return c.JSON(http.StatusOK, compositeView{Info: composite.Info{Room: r, State: "none", Tiles: []composite.Tile{}},
				Pushes: []rtmp.Info{}})
		}
		if err != nil {
			return compositeError(err)
		}
		v := compositeView{Info: in, Pushes: []rtmp.Info{}}
		if egress != nil {
			for _, j := range egress.List() {
				if j.Stream != in.Stream {
					continue
				}
				if !d.Admin && !d.Open {
					// Room tokens (every viewer has one) see where the
					// show goes, not the CDN's app path or its errors,
					// which can name the stream.
					j.URL, j.LastError = pushOrigin(j.URL), ""
				}
				v.Pushes = append(v.Pushes, j)
			}
		}
		return c.JSON(http.StatusOK, v)
	})
	e.DELETE("/api/v1/rooms/:room/composite", func(c echo.Context) error {
		r, err := room(c)
		if err != nil {
			return err
		}
		in, err := api.Stop(r)
		if err != nil {
			return compositeError(err)
		}
		return c.JSON(http.StatusOK, in)
	})
	e.GET("/api/v1/composites", func(c echo.Context) error {
		if err := s.isAdmin(c); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"composites": api.List()})
	})
}

func compositeError(err error) error {
	switch {
	case errors.Is(err, composite.ErrNotFound):
		return newError(http.StatusNotFound, "composite_not_found", err.Error())
	case errors.Is(err, composite.ErrBadInput):
		return newError(http.StatusBadRequest, "bad_composite", err.Error())
	case errors.Is(err, composite.ErrRunning):
		return newError(http.StatusConflict, "composite_running", err.Error())
	case errors.Is(err, composite.ErrNoFFmpeg):
		return newError(http.StatusServiceUnavailable, "no_ffmpeg", err.Error())
	case errors.Is(err, composite.ErrClosed):
		return newError(http.StatusServiceUnavailable, "shutting_down", err.Error())
	}
	return err
}

// pushOrigin is a push URL without its path and query: scheme and host.
func pushOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
