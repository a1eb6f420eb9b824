package gateway

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"

	ingestrtmp "github.com/livegate/livegate/ingest/rtmp"
	ingestrtsp "github.com/livegate/livegate/ingest/rtsp"
	"github.com/livegate/livegate/web"
	"github.com/livegate/livegate/web/auth"
)

// startIngest starts the RTMP and RTSP listeners. Their clients cannot send
// an Authorization header, so the token comes in the URL (?token=JWT) and
// is checked here with the same rules as WHIP and WHEP.
func (g *Gateway) startIngest(cfg Config, log *slog.Logger) error {
	open := func(ip string) bool {
		switch cfg.AuthMode {
		case web.AuthOff:
			return true
		case web.AuthOn:
			return false
		}
		p := net.ParseIP(ip)
		return cfg.AuthKey == "" && p != nil && p.IsLoopback()
	}
	claims := func(token string) (*auth.Claims, error) {
		if token == "" {
			return nil, errors.New("a token is required: add ?token=JWT to the URL")
		}
		if cfg.AuthKey == "" {
			return nil, errors.New("no auth-key is configured, so tokens cannot be checked")
		}
		return auth.Verify([]byte(cfg.AuthKey), token)
	}
	authPublish := func(room, name, token, ip string) error {
		if open(ip) {
			return nil
		}
		cl, err := claims(token)
		if err != nil {
			return err
		}
		return cl.CanPublish(room, name)
	}
	authRead := func(room, _, token, ip string) error {
		if open(ip) || (cfg.ClusterKey != "" && subtle.ConstantTimeCompare([]byte(token), []byte(cfg.ClusterKey)) == 1) {
			return nil
		}
		cl, err := claims(token)
		if err != nil {
			return err
		}
		return cl.CanSubscribe(room)
	}
	var err error
	if cfg.RTMPAddr != "" {
		if g.rtmpIn, err = ingestrtmp.New(ingestrtmp.Params{Hub: g.hub, Addr: cfg.RTMPAddr,
			Authorize: authPublish, FFmpeg: cfg.FFmpeg, Logger: log}); err != nil {
			return err
		}
	}
	if cfg.RTSPAddr != "" {
		if g.rtsp, err = ingestrtsp.New(ingestrtsp.Params{Hub: g.hub, Addr: cfg.RTSPAddr,
			Authorize: authPublish, AuthorizeRead: authRead, FFmpeg: cfg.FFmpeg, Logger: log}); err != nil {
			return err
		}
	}
	return nil
}

// RTMPAddr is the RTMP ingest address, nil when off.
func (g *Gateway) RTMPAddr() net.Addr {
	if g.rtmpIn == nil {
		return nil
	}
	return g.rtmpIn.Addr()
}

// RTSPAddr is the RTSP address, nil when off.
func (g *Gateway) RTSPAddr() net.Addr {
	if g.rtsp == nil {
		return nil
	}
	return g.rtsp.Addr()
}
