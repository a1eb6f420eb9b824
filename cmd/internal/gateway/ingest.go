package gateway

import (
	"log/slog"
	"net"
	"net/netip"

	ingestrtmp "github.com/livegate/livegate/ingest/rtmp"
	ingestrtsp "github.com/livegate/livegate/ingest/rtsp"
	"github.com/livegate/livegate/web/auth"
)

// mediaAuthorizer is the RTMP and RTSP adapter of the access policy. Their
// clients cannot send an Authorization header, so the token comes in the
// URL (?token=JWT); the policy decides as for every other protocol (and
// refuses the admin and cluster keys there, as in any URL).
func (g *Gateway) mediaAuthorizer(action auth.Action, proto auth.Protocol) func(room, name, token, ip string) (string, error) {
	return func(room, name, token, ip string) (string, error) {
		client, _ := netip.ParseAddr(ip)
		d, err := g.policy.Authorize(auth.Access{Action: action, Protocol: proto, Room: room, Name: name,
			Credential: token, CredentialInURL: true, Client: client.Unmap()})
		if err != nil || d.Claims == nil {
			return "", err
		}
		return d.Claims.Identity, nil
	}
}

// startIngest starts the RTMP and RTSP listeners.
func (g *Gateway) startIngest(cfg Config, log *slog.Logger) error {
	var err error
	if cfg.RTMPAddr != "" {
		p := cfg.RTMPInParams
		p.Hub, p.Addr, p.FFmpeg, p.Logger = g.hub, g.listenAddr("rtmp", cfg.RTMPAddr), cfg.FFmpeg, log
		p.Authorize = g.mediaAuthorizer(auth.ActionPublish, auth.ProtoRTMP)
		if g.rtmpIn, err = ingestrtmp.New(p); err != nil {
			return err
		}
		g.stack.push(g.rtmpIn.Close)
		if err := g.policy.CheckListener("rtmp", g.rtmpIn.Addr()); err != nil {
			return err
		}
	}
	if cfg.RTSPAddr != "" {
		if g.rtsp, err = ingestrtsp.New(ingestrtsp.Params{Hub: g.hub, Addr: g.listenAddr("rtsp", cfg.RTSPAddr),
			Authorize:     g.mediaAuthorizer(auth.ActionPublish, auth.ProtoRTSP),
			AuthorizeRead: g.mediaAuthorizer(auth.ActionRead, auth.ProtoRTSP), FFmpeg: cfg.FFmpeg, Logger: log}); err != nil {
			return err
		}
		g.stack.push(g.rtsp.Close)
		if err := g.policy.CheckListener("rtsp", g.rtsp.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// listenAddr binds a listener given without a host (":1935", a default)
// to loopback when auth is off: an open gateway exposes nothing beyond
// this machine. An explicit non-loopback host is refused by CheckListener.
func (g *Gateway) listenAddr(name, addr string) string {
	if g.policy.Mode() != auth.ModeOff {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	lo := net.JoinHostPort("127.0.0.1", port)
	g.log.Warn("auth is off: listening on loopback only", "listener", name, "addr", lo)
	return lo
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
