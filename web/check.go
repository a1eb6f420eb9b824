package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/internal/addrlimit"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/web/auth"
)

// SelfTest is the gateway's side of the connectivity self-test page
// (/check): it answers test offers with candidates of one transport and
// names the media ports, so the page can tell which paths work from the
// user's network and what to change.
type SelfTest interface {
	Check(ctx context.Context, offer, transport string, hold time.Duration) (string, error)
	// MediaPorts are the UDP and ICE-TCP ports (0: off).
	MediaPorts() (udp, tcp int)
}

// checkHold is how long a test connection stays up: long enough to see
// it connect, short enough that checks cost little.
const checkHold = 8 * time.Second

// checksPerAddress bounds the test connections one address (an IPv6 /64)
// holds at once: the engine runs only 32, so without it one client could
// keep every slot taken and the page broken for everyone. It leaves room
// for one run of the page (UDP, TCP and each TURN URL, in parallel) and
// most of a second.
const checksPerAddress = 8

// checkSlots counts the test connections each address holds.
type checkSlots struct{ addrlimit.Counter }

// take reserves a slot for ip; the returned func gives it back (once).
func (c *checkSlots) take(ip string) (func(), error) {
	release, ok := c.Acquire(addrlimit.Key(ip), checksPerAddress)
	if !ok {
		return nil, newError(http.StatusTooManyRequests, "too_many_checks_from_address",
			"this address already runs "+strconv.Itoa(checksPerAddress)+" connectivity tests; try again in a few seconds")
	}
	return release, nil
}

func (s *Server) registerCheck(t SelfTest) {
	e := s.echo
	e.GET("/check", s.page("check.html"))
	// What to test: the media ports, and the ICE servers as Link headers
	// (the same list WHIP and WHEP answers carry).
	e.GET("/check/servers", func(c echo.Context) error {
		s.iceLinks(c, auth.Decision{})
		udp, tcp := t.MediaPorts()
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, map[string]any{"udpPort": udp, "tcpPort": tcp, "host": hostOnly(c.Request().Host)})
	})
	e.POST("/check/ice/:transport", func(c echo.Context) error {
		transport := c.Param("transport")
		if transport != "udp" && transport != "tcp" && transport != "any" {
			return newError(http.StatusNotFound, "not_found", "test one of udp, tcp or any")
		}
		// Test offers need no token, so their candidates are screened like
		// any offer's: otherwise anyone could aim the gateway's
		// connectivity checks at multicast, reserved or (with
		// refuse-private-candidates) internal addresses.
		offer, _, err := s.readOffer(c)
		if err != nil {
			return err
		}
		releaseCheck, err := s.checks.take(clientIP(c))
		if err != nil {
			return err
		}
		// Anyone may test: the per-address limits of viewers apply.
		releaseSession, err := s.limits.admit(c, clientIP(c), false)
		if err != nil {
			releaseCheck()
			return err
		}
		release := func() { releaseSession(); releaseCheck() }
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.p.OfferTimeout)
		defer cancel()
		answer, err := t.Check(ctx, offer, transport, checkHold)
		if err != nil {
			release()
			if errors.Is(err, rtc.ErrCheckBusy) {
				return newError(http.StatusServiceUnavailable, "busy", err.Error())
			}
			return err
		}
		time.AfterFunc(checkHold, release)
		return c.Blob(http.StatusCreated, mimeSDP, []byte(answer))
	})
}
