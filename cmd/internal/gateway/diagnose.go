package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
)

// Diagnose is the server's half of the connectivity check (`livegate
// check`): for the settings in cfg it says, one line each, whether the
// ports can be bound or answer (when the gateway is running), which
// addresses clients will be told, what the STUN servers see, and what to
// change. It returns whether it found a problem.
func Diagnose(ctx context.Context, cfg Config, out io.Writer) (problems bool) {
	say := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			problems = true
		}
		fmt.Fprintf(out, "%s %s\n", mark, fmt.Sprintf(format, args...))
	}
	note := func(format string, args ...any) { fmt.Fprintf(out, "     %s\n", fmt.Sprintf(format, args...)) }

	running := false
	if cfg.HTTP != "" {
		switch free, err := canBind("tcp", cfg.HTTP); {
		case free:
			say(true, "http %s: free (livegate is not running)", cfg.HTTP)
		case errors.Is(err, syscall.EADDRINUSE) && healthy(ctx, cfg.HTTP):
			running = true
			say(true, "http %s: livegate answers /healthz", cfg.HTTP)
		default:
			say(false, "http %s: cannot bind and no livegate answers there: %v", cfg.HTTP, err)
		}
	}
	udp, tcp, err := mediaAddrs(cfg.WebRTCUDP, cfg.WebRTCTCP)
	if err != nil {
		say(false, "media: %v", err)
	}
	port := func(network, addr, what string) {
		if addr == "" {
			note("%s: off", what)
			return
		}
		free, err := canBind(network, addr)
		switch {
		case free:
			say(true, "%s %s: free", what, addr)
		case errors.Is(err, syscall.EADDRINUSE) && running:
			say(true, "%s %s: in use (by the running livegate, presumably)", what, addr)
		default:
			say(false, "%s %s: cannot bind: %v", what, addr, err)
		}
	}
	port("udp", udp, "media UDP (webrtc-udp)")
	port("tcp", tcp, "media TCP, ICE-TCP (webrtc-tcp)")
	port("udp", cfg.ICE.TURNUDP, "TURN UDP (turn-udp)")
	port("tcp", cfg.ICE.TURNTCP, "TURN TCP (turn-tcp)")
	port("tcp", cfg.ICE.TURNTLS, "TURN TLS (turn-tls)")

	// What clients are told, and what the internet sees.
	ips, err := resolveIPs(ctx, cfg.WebRTCIPs, cfg.STUNServers, discardLog())
	if err != nil {
		say(false, "webrtc-ips: %v", err)
	}
	told := publicIPs(ips)
	if len(told) == 0 {
		note("webrtc-ips empty: clients are told this machine's interface addresses")
	} else {
		note("clients are told media addresses %s (UDP %s, TCP %s)", strings.Join(told, ", "), portOf(udp), portOf(tcp))
	}
	publicHTTP := false
	if h, _, err := net.SplitHostPort(cfg.HTTP); err == nil {
		a, perr := netip.ParseAddr(h)
		publicHTTP = h == "" || (perr == nil && !a.IsLoopback())
	}
	for _, ip := range told {
		if a, err := netip.ParseAddr(ip); err == nil && publicHTTP && (a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()) {
			say(false, "media address %s is private or loopback while http listens publicly: clients elsewhere will not connect (set webrtc-ips to the public IP, PUBLIC/LOCAL, or auto)", ip)
		}
	}
	for _, u := range cfg.STUNServers {
		a, err := publicAddr(ctx, u)
		if err != nil {
			say(false, "STUN %s: %v", u, err)
			continue
		}
		switch {
		case len(told) == 0:
			say(true, "STUN %s sees this machine as %s (set webrtc-ips %s if clients are elsewhere)", u, a, a)
		case slices.Contains(told, a.String()):
			say(true, "STUN %s sees this machine as %s, as advertised", u, a)
		default:
			say(false, "STUN %s sees this machine as %s but clients are told %s: set webrtc-ips %s (or %s/LOCAL behind 1:1 NAT)",
				u, a, strings.Join(told, ", "), a, a)
		}
	}
	if running && cfg.ICE.TURNUDP != "" {
		if err := stunPing(ctx, "udp", cfg.ICE.TURNUDP); err != nil {
			say(false, "TURN UDP %s does not answer: %v", cfg.ICE.TURNUDP, err)
		} else {
			say(true, "TURN UDP %s answers", cfg.ICE.TURNUDP)
		}
	}
	note("firewall: open %s", firewallRules(cfg.HTTP, udp, tcp, cfg.ICE))
	return problems
}

func portOf(addr string) string {
	if addr == "" {
		return "off"
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

func firewallRules(httpAddr, udp, tcp string, ic ICEConfig) string {
	var r []string
	add := func(proto, addr string) {
		if addr != "" {
			r = append(r, portOf(addr)+"/"+proto)
		}
	}
	add("tcp", httpAddr)
	add("udp", udp)
	add("tcp", tcp)
	add("udp", ic.TURNUDP)
	add("tcp", ic.TURNTCP)
	add("tcp", ic.TURNTLS)
	return strings.Join(r, ", ") + " (HTTP may instead be your TLS proxy's port)"
}

// canBind says whether addr can be bound now; the error says why not.
func canBind(network, addr string) (bool, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false, err
		}
		return true, c.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false, err
	}
	return true, l.Close()
}

func loopbackFor(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if h == "" || h == "0.0.0.0" || h == "::" {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, p)
}

func healthy(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+loopbackFor(addr)+"/healthz", nil)
	if err != nil {
		return false
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// stunPing sends a STUN binding request, which a TURN server answers.
func stunPing(ctx context.Context, network, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, loopbackFor(addr))
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return err
	}
	if _, err := c.Write(req.Raw); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	m := &stun.Message{Raw: buf[:n]}
	if err := m.Decode(); err != nil {
		return err
	}
	if m.Type != stun.BindingSuccess {
		return fmt.Errorf("answer %s", m.Type)
	}
	return nil
}
