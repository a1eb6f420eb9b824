package web

// The WHIP and WHEP resources (RFC 9725): the offer that creates a session,
// OPTIONS with the ICE servers, PATCH for trickle and ICE restarts, DELETE.

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/pion/sdp/v3"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/web/auth"
)

func (s *Server) offer(ep Endpoint, action auth.Action, proto auth.Protocol) echo.HandlerFunc {
	return func(c echo.Context) error {
		path, err := streamPath(c)
		if err != nil {
			return err
		}
		d, err := s.authorize(c, action, proto)
		if err != nil {
			return err
		}
		// The offer is read and checked before anything costs work: a WHEP
		// offer may make an edge ask its parent for the stream.
		offer, ncand, err := s.readOffer(c)
		if err != nil {
			return err
		}
		// Relay links are never redirected: a child must get the stream
		// from the parent it chose.
		if ep == s.p.WHEP && s.p.Cluster != nil && !d.Relay {
			if done, err := s.redirectViewer(c, s.p.Cluster, d); done {
				return err
			}
		}
		ip := clientIP(c)
		release := func() {}
		// Relay links, authenticated by the cluster key, are one node's
		// pulls for many viewers: the per-address limits do not apply.
		if !d.Relay {
			if release, err = s.limits.admit(c, ip, ep == s.p.WHIP); err != nil {
				return err
			}
		}
		if ep == s.p.WHIP {
			s.notePublisher(c, path, d)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.p.OfferTimeout)
		defer cancel()
		if ep == s.p.WHIP {
			// Who publishes: a new session of the same identity may take
			// over its stream from a silent publisher (relay.PublishAs).
			owner := ""
			if d.Claims != nil {
				owner = d.Claims.Identity
			}
			ctx = relay.WithOwner(ctx, owner)
		}
		if d.Relay && c.Request().Header.Get(relay.RelayResumeHeader) != "" {
			ctx = relay.WithRelayReader(ctx) // see relay.CacheStartSink
		}
		if ep == s.p.WHEP {
			// Simulcast: relay links carry the top layer; a viewer may
			// pin a layer with ?layer=.
			if d.Relay {
				ctx = relay.WithLayer(ctx, relay.TrackLayer)
			} else if l := c.QueryParam("layer"); l != "" {
				ctx = relay.WithLayer(ctx, l)
			}
		}
		sess, err := ep.Offer(ctx, path, offer, ip)
		if err != nil {
			release()
			return err
		}
		sess.OnClose(release)
		_ = s.candidates.take(sess, ncand, s.limits.CandidatesPerSession)
		if ep == s.p.WHIP {
			s.notePublished(sess)
		}
		h := c.Response().Header()
		loc := c.Request().URL.Path + "/" + sess.ID
		if ep == s.p.WHEP && s.p.Cluster != nil && c.QueryParam("access_token") != "" {
			// Redirected here: an absolute URL, so that a player resolving
			// it against the URL it first asked still finds this node.
			loc = s.p.Cluster.Self().URL + loc
		}
		h.Set("Location", loc)
		h.Set("ETag", sess.ETag())
		h.Set("Accept-Patch", mimeSDPFrag)
		s.iceLinks(c, d)
		return c.Blob(http.StatusCreated, mimeSDP, []byte(sess.Answer()))
	}
}

// offerOptions adds the ICE servers to the OPTIONS answer of an offer URL
// when the request would be allowed to offer there (a same-origin page
// sends its token; a CORS preflight carries none and gets none): clients
// that cannot change their ICE servers after the offer fetch them first.
func (s *Server) offerOptions(next echo.HandlerFunc, action auth.Action, proto auth.Protocol) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.p.ICEServers != nil && s.policy != nil {
			if _, err := streamPath(c); err == nil {
				r := c.Request()
				tok, inURL := bearer(r)
				d, err := s.policy.Authorize(auth.Access{
					Action: action, Protocol: proto, Room: c.Param("room"), Name: c.Param("name"),
					Credential: tok, CredentialInURL: inURL,
					Client: peerAddr(r), Forwarded: forwarded(r), Host: hostOnly(r.Host), CrossOrigin: crossOrigin(r),
				})
				if err == nil {
					s.iceLinks(c, d)
				}
			}
		}
		return next(c)
	}
}

// iceLinks adds the ICE servers as Link headers (RFC 9725 section 4.6).
func (s *Server) iceLinks(c echo.Context, d auth.Decision) {
	if s.p.ICEServers == nil || d.Relay {
		return // relay links use their node's own configuration
	}
	user := ""
	if d.Claims != nil {
		user = d.Claims.Identity
	}
	h := c.Response().Header()
	for _, v := range s.p.ICEServers(hostOnly(c.Request().Host), user) {
		h.Add("Link", v)
	}
}

// checkOffer refuses a body that is not an SDP offer with media before any
// work is done for it.
func checkOffer(offer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return newError(http.StatusBadRequest, "bad_sdp", "the body is not an SDP offer: "+err.Error())
	}
	if len(sd.MediaDescriptions) == 0 {
		return newError(http.StatusBadRequest, "bad_sdp", "the SDP offer has no media section")
	}
	// WebRTC needs ICE credentials and a DTLS fingerprint, for the session
	// or for every media section.
	for _, attr := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
		if _, ok := sd.Attribute(attr); ok {
			continue
		}
		for _, md := range sd.MediaDescriptions {
			if _, ok := md.Attribute(attr); !ok {
				return newError(http.StatusBadRequest, "bad_sdp", "the SDP offer has no a="+attr+": not a WebRTC offer")
			}
		}
	}
	return nil
}

func (s *Server) session(c echo.Context, ep Endpoint) (*rtc.Session, error) {
	path, err := streamPath(c)
	if err != nil {
		return nil, err
	}
	return ep.Session(path, c.Param("id"))
}

func (s *Server) patch(ep Endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, err := s.session(c, ep)
		if err != nil {
			return err
		}
		frag, err := s.body(c, mimeSDPFrag)
		if err != nil {
			return err
		}
		frag, ncand := s.screenCandidates(frag)
		if err := s.candidates.take(sess, ncand, s.limits.CandidatesPerSession); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.p.OfferTimeout)
		defer cancel()
		answer, err := sess.Patch(ctx, frag, c.Request().Header.Get("If-Match"))
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", sess.ETag())
		if answer == "" {
			return c.NoContent(http.StatusNoContent)
		}
		return c.Blob(http.StatusOK, mimeSDPFrag, []byte(answer))
	}
}

func (s *Server) remove(ep Endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, err := s.session(c, ep)
		if err != nil {
			// A publisher whose connection closed just before its DELETE
			// still hangs up.
			if ep == s.p.WHIP && errors.Is(err, rtc.ErrSessionNotFound) &&
				s.noteHangup(c.Param("room")+"/"+c.Param("name"), c.Param("id")) {
				return c.NoContent(http.StatusOK)
			}
			return err
		}
		sess.Close()
		if ep == s.p.WHIP {
			s.noteHangup(sess.Path, sess.ID)
		}
		return c.NoContent(http.StatusOK)
	}
}
