package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST convention (and coturn) use HMAC-SHA1
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ICEServers is the list of STUN and TURN servers handed to clients.
type ICEServers struct {
	// URLs are stun:, stuns:, turn: or turns: URLs (RFC 7064, RFC 7065).
	// "{host}" stands for the host name the client reached the HTTP
	// server at, so one setting serves every name the gateway has.
	URLs []string
	// Secret signs time-limited credentials for the turn(s): URLs (the
	// TURN REST convention: username "EXPIRY:USER", password
	// base64(HMAC-SHA1(secret, username))). Empty: none are sent.
	Secret string
	// TTL is how long credentials stay valid (default 24 h). A TURN
	// allocation is refreshed with them, so a session relayed through
	// TURN ends when they expire: keep it above the longest session.
	TTL time.Duration
}

// ICEServer is one entry of the list, as RTCIceServer.
type ICEServer struct {
	URL        string
	Username   string
	Credential string
}

// CheckURL says whether u is a STUN or TURN URL a browser accepts.
func CheckURL(u string) error {
	scheme, rest, ok := strings.Cut(u, ":")
	switch {
	case !ok || rest == "":
		return fmt.Errorf("%q is not a stun:, stuns:, turn: or turns: URL", u)
	case scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns":
		return fmt.Errorf("%q: scheme must be stun, stuns, turn or turns", u)
	case strings.ContainsAny(u, "<>\"\\ \t\r\n,"):
		return fmt.Errorf("%q: characters not allowed in an ICE server URL", u)
	}
	return nil
}

// For returns the list for a client that reached the gateway at host
// (the HTTP Host without port), with credentials for user.
func (l ICEServers) For(host, user string, now time.Time) []ICEServer {
	if len(l.URLs) == 0 {
		return nil
	}
	var name, pass string
	if l.Secret != "" {
		name, pass = Credentials(l.Secret, user, l.ttl(), now)
	}
	host = urlHost(host)
	out := make([]ICEServer, 0, len(l.URLs))
	for _, u := range l.URLs {
		if host == "" && strings.Contains(u, "{host}") {
			continue
		}
		s := ICEServer{URL: strings.ReplaceAll(u, "{host}", host)}
		if strings.HasPrefix(u, "turn") && name != "" {
			s.Username, s.Credential = name, pass
		}
		out = append(out, s)
	}
	return out
}

// urlHost makes a Host header's name fit for a URL: brackets around an
// IPv6 address, and nothing when it has characters no host name has (the
// header comes from the client).
func urlHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for _, r := range h {
		if !(r == '-' || r == '.' || r == ':' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			return ""
		}
	}
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

func (l ICEServers) ttl() time.Duration {
	if l.TTL <= 0 {
		return 24 * time.Hour
	}
	return l.TTL
}

// Credentials derives a TURN REST username and password valid for ttl.
func Credentials(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	if user = strings.Map(keepUserRune, user); user != "" {
		username += ":" + user
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// keepUserRune keeps the user part of a username safe inside a quoted
// Link parameter and free of the ':' that separates it from the expiry.
func keepUserRune(r rune) rune {
	if r == '-' || r == '_' || r == '.' || r == '@' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
		return r
	}
	return -1
}

// Link formats s as an RFC 9725 Link header value.
func (s ICEServer) Link() string {
	v := "<" + s.URL + `>; rel="ice-server"`
	if s.Username != "" {
		v += `; username="` + s.Username + `"; credential="` + s.Credential + `"; credential-type="password"`
	}
	return v
}
