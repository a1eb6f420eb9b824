package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
)

// Mode says when tokens are required.
type Mode string

// Access modes.
const (
	// ModeAuto requires tokens, except from clients on this machine while
	// no signing key is configured: the zero-setup development default.
	ModeAuto Mode = "auto"
	// ModeOn always requires tokens.
	ModeOn Mode = "on"
	// ModeOff requires no token from clients on this machine; every
	// listener must be bound to loopback.
	ModeOff Mode = "off"
)

// Action is what a client wants to do.
type Action string

// Actions.
const (
	ActionPublish Action = "publish" // send a stream: WHIP, RTMP publish, RTSP record
	ActionRead    Action = "read"    // watch a stream: WHEP, HLS, RTSP play, a relay link, stream info
	ActionRoom    Action = "room"    // read a room's state and its event stream
	ActionChat    Action = "chat"    // post to a room's chat
	ActionAdmin   Action = "admin"   // mint tokens, list and manage streams, rooms, recordings, egress, metrics
	ActionWhoami  Action = "whoami"  // ask what the credential allows
	// ActionPlayback fetches a recording's playlist or segments: admins,
	// or a playback token for that recording (which may come in the URL).
	ActionPlayback Action = "playback"
)

// Protocol is how the request arrived.
type Protocol string

// Protocols.
const (
	ProtoWHIP   Protocol = "whip"
	ProtoWHEP   Protocol = "whep"
	ProtoHLS    Protocol = "hls"
	ProtoRTMP   Protocol = "rtmp"
	ProtoRTSP   Protocol = "rtsp"
	ProtoAPI    Protocol = "api"    // JSON API, metrics, recordings
	ProtoEvents Protocol = "events" // room event streams (SSE)
)

// allowed lists, per protocol, the actions it can ask for. Anything else is
// an adapter bug, refused rather than guessed.
var allowed = map[Protocol][]Action{
	ProtoWHIP:   {ActionPublish},
	ProtoWHEP:   {ActionRead},
	ProtoHLS:    {ActionRead},
	ProtoRTMP:   {ActionPublish},
	ProtoRTSP:   {ActionPublish, ActionRead},
	ProtoAPI:    {ActionRead, ActionRoom, ActionChat, ActionAdmin, ActionWhoami, ActionPlayback},
	ProtoEvents: {ActionRoom},
}

// httpLike reports whether the protocol carries a Host header that a
// browser fills in (and that DNS rebinding can abuse).
func (p Protocol) httpLike() bool { return p != ProtoRTMP && p != ProtoRTSP }

// Access is one access question. Adapters fill it in from what arrived;
// the policy decides.
type Access struct {
	Action   Action
	Protocol Protocol
	Room     string
	Name     string
	// Credential is the bearer token, admin key or cluster key; "" if none.
	Credential string
	// CredentialInURL is set when the credential came in a URL query
	// (?access_token=, ?token=): URLs end up in logs, histories and
	// copied links, so the long-lived keys are refused there.
	CredentialInURL bool
	// Recording is the recording ID of ActionPlayback.
	Recording string
	// Client is the TCP peer's address.
	Client netip.Addr
	// Forwarded is set when the request carries proxy headers: the TCP
	// peer is then a proxy, and the real client may be anywhere.
	Forwarded bool
	// Host is the host the client addressed (HTTP Host header) without the
	// port; "" for protocols without one.
	Host string
	// CrossOrigin is set when a browser sent the request from a page of
	// another origin.
	CrossOrigin bool
}

// Decision is a granted request: who the client is.
type Decision struct {
	Open   bool    // no credential needed: a client on this machine in open mode
	Admin  bool    // the admin key or a token with the admin grant
	Relay  bool    // the cluster key: a relay link of another node
	Claims *Claims // the verified token, if one was presented
}

// Errors of Authorize beyond ErrNoToken, ErrInvalidToken, ErrForbidden.
var (
	// ErrNotLocal: the gateway is open only to its own machine, and this
	// client is not on it (or came through a proxy). Maps to 401 in auto
	// mode (a key would let tokens work) and 403 with auth off.
	ErrNotLocal = errors.New("not a client on this machine")
	// ErrHostNotAllowed: open mode, but the request addressed a Host that
	// is neither loopback nor allow-listed (DNS rebinding), or came from a
	// page of another origin. 403.
	ErrHostNotAllowed = errors.New("host not allowed")
)

// MinSecretLen is the shortest accepted admin or cluster key.
const MinSecretLen = 16

// PolicyConfig is the access configuration.
type PolicyConfig struct {
	Mode Mode
	// Key signs new tokens and verifies them. Tokens carry its key ID.
	Key []byte
	// PreviousKeys still verify tokens signed with them (rotation); remove
	// a key from here to revoke every token it signed.
	PreviousKeys [][]byte
	// AdminKey, as a bearer header, allows admin actions.
	AdminKey string
	// ClusterKey, as a bearer header, lets relay edges watch any stream.
	ClusterKey string
	// OpenHosts are Host names (besides localhost and loopback addresses)
	// that open mode answers, e.g. a name mapped to 127.0.0.1.
	OpenHosts []string
}

// Policy answers every access question of every protocol.
type Policy struct {
	mode      Mode
	keys      []verifyKey // current first
	admin     []byte
	cluster   []byte
	openHosts map[string]bool
}

type verifyKey struct {
	id  string
	key []byte
}

var hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$`)

// NewPolicy validates c and builds the policy.
func NewPolicy(c PolicyConfig) (*Policy, error) {
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	p := &Policy{mode: c.Mode, admin: []byte(c.AdminKey), cluster: []byte(c.ClusterKey), openHosts: map[string]bool{}}
	var errs []error
	switch c.Mode {
	case ModeAuto, ModeOff:
	case ModeOn:
		if len(c.Key) == 0 {
			errs = append(errs, errors.New("auth on needs an auth-key"))
		}
	default:
		errs = append(errs, fmt.Errorf("auth: %q is not auto, on or off", c.Mode))
	}
	if len(c.Key) > 0 {
		if len(c.Key) < MinKeyLen {
			errs = append(errs, fmt.Errorf("auth-key must be at least %d bytes", MinKeyLen))
		}
		p.keys = append(p.keys, verifyKey{KeyID(c.Key), c.Key})
	} else if len(c.PreviousKeys) > 0 {
		errs = append(errs, errors.New("auth-previous-keys needs an auth-key to sign new tokens"))
	}
	for i, k := range c.PreviousKeys {
		if len(k) < MinKeyLen {
			errs = append(errs, fmt.Errorf("auth-previous-keys[%d] must be at least %d bytes", i, MinKeyLen))
		}
		if subtle.ConstantTimeCompare(k, c.Key) == 1 {
			errs = append(errs, fmt.Errorf("auth-previous-keys[%d] is the current auth-key", i))
		}
		p.keys = append(p.keys, verifyKey{KeyID(k), k})
	}
	for name, v := range map[string]string{"admin-key": c.AdminKey, "cluster-key": c.ClusterKey} {
		if v != "" && len(v) < MinSecretLen {
			errs = append(errs, fmt.Errorf("%s must be at least %d bytes", name, MinSecretLen))
		}
		if v != "" && len(c.Key) > 0 && subtle.ConstantTimeCompare([]byte(v), c.Key) == 1 {
			errs = append(errs, fmt.Errorf("%s must differ from auth-key", name))
		}
	}
	if c.AdminKey != "" && c.AdminKey == c.ClusterKey {
		errs = append(errs, errors.New("admin-key and cluster-key must differ: a relay edge must not be an administrator"))
	}
	for _, h := range c.OpenHosts {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		if !hostName.MatchString(h) {
			errs = append(errs, fmt.Errorf("open-hosts: %q is not a host name (no port, no wildcard)", h))
			continue
		}
		p.openHosts[h] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// Mode is the configured mode.
func (p *Policy) Mode() Mode { return p.mode }

// Open reports whether clients on this machine may come without a token:
// auth off, or auto without a signing key. Pages and CORS use it: an open
// gateway answers only its own machine and never other origins.
func (p *Policy) Open() bool {
	return p.mode == ModeOff || (p.mode == ModeAuto && len(p.keys) == 0)
}

// CanMint reports whether tokens can be minted (a signing key is set).
func (p *Policy) CanMint() bool { return len(p.keys) > 0 }

// SigningKey is the key new tokens are signed with (nil without one).
func (p *Policy) SigningKey() []byte {
	if len(p.keys) == 0 {
		return nil
	}
	return p.keys[0].key
}

// CheckListener refuses a listener an open gateway would expose beyond
// this machine: with auth off, every listener must be bound to loopback.
// In auto mode without a key, clients of other machines are refused on
// every protocol, so any address is safe.
func (p *Policy) CheckListener(name string, addr net.Addr) error {
	if p.mode != ModeOff || addr == nil {
		return nil
	}
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsLoopback() {
		return nil
	}
	if a, ok := addr.(*net.UDPAddr); ok && a.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("auth off is for development on loopback only; %s %s is reachable from other machines", name, addr)
}

// Authorize answers one access question. A nil error grants it; errors
// wrap ErrNoToken or ErrInvalidToken (unauthenticated), ErrNotLocal,
// ErrHostNotAllowed or ErrForbidden.
func (p *Policy) Authorize(r Access) (Decision, error) {
	acts, ok := allowed[r.Protocol]
	if !ok || !contains(acts, r.Action) {
		return Decision{}, fmt.Errorf("%w: %s cannot be done over %s", ErrForbidden, r.Action, r.Protocol)
	}
	if r.Action == ActionPublish || r.Action == ActionRead {
		if !validSegment(r.Room) || !validSegment(r.Name) {
			return Decision{}, fmt.Errorf("%w: stream path must be ROOM/NAME", ErrForbidden)
		}
	}
	if r.Action == ActionPlayback && r.Recording == "" {
		return Decision{}, fmt.Errorf("%w: no recording named", ErrForbidden)
	}
	if r.Action == ActionRoom || r.Action == ActionChat {
		if !validSegment(r.Room) {
			return Decision{}, fmt.Errorf("%w: bad room", ErrForbidden)
		}
	}
	// The admin and cluster keys work the same in every mode: an app
	// backend or relay edge needs them even where pages need no token.
	if d, ok, err := p.keyCredential(r); ok {
		return d, err
	}
	if p.Open() {
		local := r.Client.IsValid() && r.Client.Unmap().IsLoopback() && !r.Forwarded
		switch {
		case local && r.Protocol.httpLike() && !p.hostAllowed(r.Host):
			return Decision{}, fmt.Errorf("%w: this gateway has no auth-key and answers only requests for localhost or a loopback address "+
				"(Host %q; setting open-hosts), which keeps other web sites from reaching it through DNS rebinding", ErrHostNotAllowed, r.Host)
		case local && r.CrossOrigin:
			return Decision{}, fmt.Errorf("%w: this gateway has no auth-key and answers only its own pages, not pages of other origins", ErrHostNotAllowed)
		case local:
			return Decision{Open: true}, nil
		case p.mode == ModeOff:
			return Decision{}, fmt.Errorf("%w: auth is off, which serves clients on this machine only; requests through a proxy or from elsewhere need auth on", ErrNotLocal)
		}
		if r.Credential == "" {
			return Decision{}, fmt.Errorf("%w: this gateway has no auth-key configured, so it cannot check tokens; only clients on its own machine may use it", ErrNotLocal)
		}
	}
	if r.Credential == "" {
		return Decision{}, ErrNoToken
	}
	if len(p.keys) == 0 {
		return Decision{}, fmt.Errorf("%w: this gateway has no auth-key configured, so it cannot check tokens", ErrInvalidToken)
	}
	cl, err := verify(p.keys, r.Credential)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Claims: cl, Admin: cl.Has(GrantAdmin)}
	if d.Admin && r.CredentialInURL {
		return Decision{}, fmt.Errorf("%w: a token with the admin grant is accepted only in the Authorization header, not in a URL "+
			"(recording playback URLs carry a playback token of their own)", ErrInvalidToken)
	}
	if cl.Recording != "" {
		// A playback token (short-lived, in URLs) plays one recording back
		// and is worth nothing anywhere else.
		if r.Action != ActionPlayback || cl.Recording != r.Recording {
			return Decision{}, fmt.Errorf("%w: token is for playing back recording %s only", ErrForbidden, cl.Recording)
		}
		return d, nil
	}
	if cl.Stream != "" && (r.Action != ActionRead || cl.Stream != r.Room+"/"+r.Name) {
		return Decision{}, fmt.Errorf("%w: token is for watching %s only", ErrForbidden, cl.Stream)
	}
	if r.CredentialInURL && r.Protocol == ProtoWHEP && cl.Stream == "" {
		// Only redirect tokens (short-lived, one stream) go in a WHEP URL.
		return Decision{}, fmt.Errorf("%w: a token in a WHEP URL must be a redirect token; send it as Authorization: Bearer", ErrForbidden)
	}
	switch r.Action {
	case ActionPublish:
		err = cl.CanPublish(r.Room, r.Name)
	case ActionRead:
		err = cl.CanSubscribe(r.Room)
	case ActionRoom:
		if !d.Admin {
			err = cl.CanSubscribe(r.Room)
		}
	case ActionChat:
		err = cl.CanChat(r.Room)
	case ActionAdmin:
		if !d.Admin {
			err = fmt.Errorf("%w: the admin grant or the admin key is required", ErrForbidden)
		}
	case ActionPlayback:
		if !d.Admin {
			err = fmt.Errorf("%w: playing a recording back needs its playback token (from the recordings API) or the admin grant", ErrForbidden)
		}
	case ActionWhoami:
	}
	if err != nil {
		return Decision{}, err
	}
	return d, nil
}

// keyCredential handles the admin and cluster keys. matched is false when
// the credential is neither, or (on an open gateway, which may still let
// the client in) when the key does not grant the action.
func (p *Policy) keyCredential(r Access) (d Decision, matched bool, err error) {
	cred := []byte(r.Credential)
	isAdmin := len(p.admin) > 0 && subtle.ConstantTimeCompare(cred, p.admin) == 1
	isCluster := len(p.cluster) > 0 && subtle.ConstantTimeCompare(cred, p.cluster) == 1
	switch {
	case !isAdmin && !isCluster:
		return Decision{}, false, nil
	case r.CredentialInURL:
		return Decision{}, true, fmt.Errorf("%w: the admin and cluster keys are accepted only in the Authorization header, never in a URL", ErrInvalidToken)
	case isAdmin && (r.Action == ActionAdmin || r.Action == ActionRoom || r.Action == ActionWhoami || r.Action == ActionPlayback):
		return Decision{Admin: true}, true, nil
	// Relay links are WHEP reads (and the stream info a parent is asked).
	case isCluster && ((r.Action == ActionRead && (r.Protocol == ProtoWHEP || r.Protocol == ProtoAPI)) || r.Action == ActionWhoami):
		return Decision{Relay: true}, true, nil
	case p.Open():
		return Decision{}, false, nil
	case isAdmin:
		return Decision{}, true, fmt.Errorf("%w: the admin key administers; publishing, watching and chat need a token", ErrForbidden)
	}
	return Decision{}, true, fmt.Errorf("%w: the cluster key only pulls streams over WHEP", ErrForbidden)
}

// hostAllowed reports whether open mode answers a request for host:
// localhost (and its subdomains, which resolve to loopback by RFC 6761),
// a loopback address, or an allow-listed name.
func (p *Policy) hostAllowed(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" {
		return false
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || p.openHosts[h] {
		return true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	return err == nil && a.Unmap().IsLoopback()
}

func contains(as []Action, a Action) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

var segment = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func validSegment(s string) bool { return segment.MatchString(s) }
