package web

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/rtc"
)

// apiError is the JSON body of every error response.
type apiError struct {
	Status  int      `json:"-"`
	Code    string   `json:"code"`
	Message string   `json:"error"`
	Offered []string `json:"offeredCodecs,omitempty"`
	Accept  []string `json:"supportedCodecs,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func newError(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// classify maps errors from the core and the adapters to HTTP statuses, in
// one place so every endpoint answers the same way.
func classify(err error) *apiError {
	var ae *apiError
	var nc *rtc.NoCodecError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &nc):
		e := newError(http.StatusNotAcceptable, "no_supported_codec", err.Error())
		e.Offered, e.Accept = nc.Offered, nc.Supported
		return e
	case errors.Is(err, rtc.ErrBadOffer), errors.Is(err, rtc.ErrBadFragment):
		return newError(http.StatusBadRequest, "bad_sdp", err.Error())
	case errors.Is(err, rtc.ErrUnsupportedSimulcast):
		return newError(http.StatusUnprocessableEntity, "unsupported_simulcast", err.Error())
	case errors.Is(err, rtc.ErrTooManyTracks):
		return newError(http.StatusBadRequest, "too_many_tracks", err.Error())
	case errors.Is(err, relay.ErrNotFound):
		return newError(http.StatusNotFound, "stream_not_found", err.Error())
	case errors.Is(err, rtc.ErrSessionNotFound):
		return newError(http.StatusNotFound, "session_not_found", err.Error())
	case errors.Is(err, relay.ErrAlreadyLive):
		return newError(http.StatusConflict, "already_publishing", err.Error())
	case errors.Is(err, rtc.ErrETagMismatch):
		return newError(http.StatusPreconditionFailed, "etag_mismatch", err.Error())
	case errors.Is(err, rtc.ErrTooManySessions), errors.Is(err, relay.ErrTooManyReaders):
		return newError(http.StatusServiceUnavailable, "too_many_sessions", err.Error())
	case errors.Is(err, cluster.ErrUnavailable):
		return newError(http.StatusServiceUnavailable, "cluster_unavailable", err.Error())
	case errors.Is(err, relay.ErrHubClosed):
		return newError(http.StatusServiceUnavailable, "shutting_down", err.Error())
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		return newError(he.Code, codeFor(he.Code), msg)
	}
	return newError(http.StatusInternalServerError, "internal", err.Error())
}

func codeFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	}
	return "error"
}
