// Package rtcclient is a WHIP and WHEP client on pion: the load tool and
// tests publish and play with it, and relay links pull with it.
package rtcclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Options configures a client session.
type Options struct {
	// API builds the PeerConnection; nil uses a default API with pion's
	// default codecs and interceptors.
	API *webrtc.API
	// HTTP is the client for the WHIP/WHEP exchange (default http.DefaultClient).
	HTTP *http.Client
	// Token, if set, is sent as "Authorization: Bearer".
	Token string
	// Header is added to the offer's request (e.g. a relay link's hints).
	Header http.Header
}

// HTTPError is a non-201 answer to an offer.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// Session is one WHIP or WHEP client session.
type Session struct {
	PC       *webrtc.PeerConnection
	Resource string // absolute URL of the session resource
	ETag     string
	opts     Options
	origin   string // scheme://host:port of the endpoint: the only place the token goes
}

// originOf is the scheme and host of u, "" if u does not parse.
func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	return strings.ToLower(p.Scheme + "://" + p.Host)
}

// setToken adds the bearer token to req if it goes to the endpoint's
// origin: a Location naming another host must not receive it.
func (s *Session) setToken(req *http.Request) {
	if s.opts.Token != "" && s.origin != "" && originOf(req.URL.String()) == s.origin {
		req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	}
}

// LoopbackAPI returns an API whose PeerConnections gather only 127.0.0.1
// host candidates and never use mDNS: for tests and the load tool, whose
// traffic must stay on the machine. configure registers codecs and
// interceptors (nil: pion's default codecs and interceptors).
func LoopbackAPI(configure func(*webrtc.MediaEngine, *interceptor.Registry) error) (*webrtc.API, error) {
	return Loopback{Configure: configure}.API()
}

// Loopback is a LoopbackAPI with settings of its own.
type Loopback struct {
	// Configure registers codecs and interceptors (nil: pion's default
	// codecs and interceptors).
	Configure func(*webrtc.MediaEngine, *interceptor.Registry) error
	// ReplayWindow is the SRTP replay window in packets (0: 1024).
	// Browsers accept retransmissions up to 1024 packets late; pion's
	// default of 64 would discard them and overstate loss.
	ReplayWindow uint
	// TCP makes the PeerConnections use ICE-TCP only (to the gateway's
	// passive candidates) instead of UDP.
	TCP bool
	// Settings, if set, is applied last (a UDP mux of the test's own,
	// shorter ICE timeouts).
	Settings func(*webrtc.SettingEngine)
}

// API builds the API.
func (l Loopback) API() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	reg := &interceptor.Registry{}
	configure := l.Configure
	if configure == nil {
		configure = func(m *webrtc.MediaEngine, reg *interceptor.Registry) error {
			if err := m.RegisterDefaultCodecs(); err != nil {
				return err
			}
			return webrtc.RegisterDefaultInterceptors(m, reg)
		}
	}
	if err := configure(m, reg); err != nil {
		return nil, err
	}
	s := webrtc.SettingEngine{}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	network := webrtc.NetworkTypeUDP4
	if l.TCP {
		network = webrtc.NetworkTypeTCP4
	}
	s.SetNetworkTypes([]webrtc.NetworkType{network})
	s.SetIncludeLoopbackCandidate(true)
	s.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	window := l.ReplayWindow
	if window == 0 {
		window = 1024
	}
	s.SetSRTPReplayProtectionWindow(window)
	if l.Settings != nil {
		l.Settings(&s)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s)), nil
}

func newPC(opts Options) (*webrtc.PeerConnection, error) {
	if opts.API != nil {
		return opts.API.NewPeerConnection(webrtc.Configuration{})
	}
	return webrtc.NewPeerConnection(webrtc.Configuration{})
}

// Connect creates a PeerConnection, lets setup add transceivers, sends the
// offer to endpoint and applies the answer. On error the PeerConnection is
// closed.
func Connect(ctx context.Context, endpoint string, opts Options, setup func(*webrtc.PeerConnection) error) (*Session, error) {
	pc, err := newPC(opts)
	if err != nil {
		return nil, err
	}
	s := &Session{PC: pc, opts: opts}
	if err := s.connect(ctx, endpoint, setup); err != nil {
		_ = pc.Close()
		return nil, err
	}
	return s, nil
}

// Play opens a WHEP session that receives one video and one audio track
// (recvonly transceivers, video first); setup, if not nil, registers
// handlers (OnTrack, state changes) before the offer goes out.
func Play(ctx context.Context, endpoint string, opts Options, setup func(*webrtc.PeerConnection) error) (*Session, error) {
	return Connect(ctx, endpoint, opts, func(pc *webrtc.PeerConnection) error {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
		}
		if setup == nil {
			return nil
		}
		return setup(pc)
	})
}

func (s *Session) connect(ctx context.Context, endpoint string, setup func(*webrtc.PeerConnection) error) error {
	if err := setup(s.PC); err != nil {
		return err
	}
	if err := s.offer(ctx, nil); err != nil {
		return err
	}
	s.origin = originOf(endpoint)
	resp, answer, err := s.exchange(ctx, http.MethodPost, endpoint, "application/sdp", s.PC.LocalDescription().SDP, http.StatusCreated)
	if err != nil {
		return err
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("answer without Location: %w", err)
	}
	s.Resource, s.ETag = loc.String(), resp.Header.Get("ETag")
	return s.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// offer sets a new local offer (opts as pion's CreateOffer) and waits
// until it holds every ICE candidate: the client sends no trickle.
func (s *Session) offer(ctx context.Context, opts *webrtc.OfferOptions) error {
	offer, err := s.PC.CreateOffer(opts)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(s.PC)
	if err := s.PC.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exchange sends a request about the session (see do) and returns the
// answer and its body, or an *HTTPError when its status is not want.
func (s *Session) exchange(ctx context.Context, method, u, contentType, body string, want int) (*http.Response, string, error) {
	resp, err := s.do(ctx, method, u, contentType, body)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != want {
		return nil, "", &HTTPError{Status: resp.StatusCode, Body: string(b)}
	}
	return resp, string(b), nil
}

// do sends a request about the session: the offer (POST, with the
// caller's extra headers), an ICE restart (PATCH) or the end (DELETE).
func (s *Session) do(ctx context.Context, method, u, contentType, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewBufferString(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch method {
	case http.MethodPost:
		for k, vs := range s.opts.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
	case http.MethodPatch:
		// The restart applies to whatever state the session is in.
		req.Header.Set("If-Match", "*")
	}
	s.setToken(req)
	c := s.opts.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	return c.Do(req)
}

// Close deletes the session resource (best effort) and closes the
// PeerConnection.
func (s *Session) Close(ctx context.Context) error {
	var err error
	if s.Resource != "" {
		var resp *http.Response
		resp, err = s.do(ctx, http.MethodDelete, s.Resource, "", "")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode >= 300 {
				err = &HTTPError{Status: resp.StatusCode}
			}
		}
	}
	return errors.Join(err, s.PC.Close())
}

// ResolveURL joins a base such as "http://host:8080" with a path.
func ResolveURL(base, path string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	r, err := b.Parse(path)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}
