package rtc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Session is a WHIP or WHEP session resource: one PeerConnection (or a
// livegate-owned Transport) that a client can PATCH (trickle ICE, ICE
// restart) and DELETE.
type Session struct {
	ID     string
	Path   string
	Peer   string // remote HTTP address, for logs
	PC     *webrtc.PeerConnection
	tr     Transport // instead of PC
	answer string
	closed []string // mids the answer refused with port 0

	mu   sync.Mutex
	etag string

	closeOnce sync.Once
	done      chan struct{}
	onClose   []func()
	registry  *Registry
}

// NewSession wraps pc; call Registry.Add once the answer is set.
func NewSession(path, peer string, pc *webrtc.PeerConnection) *Session {
	return &Session{ID: randomID(), Path: path, Peer: peer, PC: pc, etag: quoteETag(randomID()), done: make(chan struct{})}
}

// Transport is a session's media transport when it is not a pion
// PeerConnection (WHEP viewers on the lite transport). It is ICE-lite:
// trickled candidates need nothing, a restart only swaps credentials.
type Transport interface {
	Close()
	RemoteUfrag() string
	// Restart takes the remote's new credentials and returns new local ones.
	Restart(ufrag, pwd string) (localUfrag, localPwd string, err error)
}

// NewTransportSession is NewSession for a session on t; SetAnswer must
// be given the full answer (a restart rewrites its credentials).
func NewTransportSession(path, peer string, t Transport) *Session {
	return &Session{ID: randomID(), Path: path, Peer: peer, tr: t, etag: quoteETag(randomID()), done: make(chan struct{})}
}

// Answer is the SDP answer of the session.
func (s *Session) Answer() string { return s.answer }

// SetAnswer records the SDP answer.
func (s *Session) SetAnswer(sdp string) {
	s.answer = sdp
	s.closed = closedMids(sdp)
}

// closedMids lists the mids of an SDP's sections with port 0.
func closedMids(sdpText string) []string {
	var mids []string
	port0 := false
	for _, line := range strings.Split(sdpText, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line)
			port0 = len(f) > 1 && f[1] == "0"
		case port0 && strings.HasPrefix(line, "a=mid:"):
			mids = append(mids, strings.TrimPrefix(line, "a=mid:"))
		}
	}
	return mids
}

// ETag identifies the current ICE session (RFC 9725 section 4.3).
func (s *Session) ETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// OnClose registers f to run once when the session closes (at once if it
// already has).
func (s *Session) OnClose(f func()) {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		f()
		return
	default:
	}
	s.onClose = append(s.onClose, f)
	s.mu.Unlock()
}

// Close ends the session and its PeerConnection. It is idempotent.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.PC != nil {
			_ = s.PC.Close()
		}
		if s.tr != nil {
			s.tr.Close()
		}
		if s.registry != nil {
			s.registry.remove(s.ID)
		}
		s.mu.Lock()
		fs := s.onClose
		s.mu.Unlock()
		for _, f := range fs {
			f()
		}
	})
}

// Patch applies a trickle-ICE SDP fragment (RFC 8840). New remote
// credentials mean an ICE restart: the answer fragment with our new
// credentials and candidates is returned, and the ETag changes. ifMatch is
// the request's If-Match header ("" if absent).
func (s *Session) Patch(ctx context.Context, frag, ifMatch string) (answerFrag string, err error) {
	f, err := parseFragment(frag)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ifMatch != "" && ifMatch != "*" && ifMatch != s.etag {
		return "", ErrETagMismatch
	}
	if s.tr != nil {
		return s.patchTransport(f, ifMatch)
	}
	remote := s.PC.RemoteDescription()
	if remote == nil {
		return "", fmt.Errorf("%w: no remote description", ErrBadFragment)
	}
	restart := f.ufrag != "" && f.ufrag != sdpValue(remote.SDP, "a=ice-ufrag:")
	if !restart {
		for _, c := range f.candidates {
			mid := c.mid
			if err := s.PC.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.line, SDPMid: &mid}); err != nil {
				return "", fmt.Errorf("%w: %w", ErrBadFragment, err)
			}
		}
		if ifMatch == "*" && f.ufrag != "" {
			// A restart request (If-Match: *) with the credentials we already
			// restarted to: the client lost our answer and retries. Answer
			// again, or it could never finish the restart.
			return answerFragment(s.PC.LocalDescription().SDP, s.closed), nil
		}
		return "", nil
	}
	if f.pwd == "" {
		return "", fmt.Errorf("%w: ICE restart without ice-pwd", ErrBadFragment)
	}
	offer := replaceCredentials(remote.SDP, f.ufrag, f.pwd)
	if err := s.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: ICE restart: %w", ErrBadFragment, err)
	}
	ans, err := s.PC.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("ICE restart answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.PC)
	if err := s.PC.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("ICE restart answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	for _, c := range f.candidates {
		mid := c.mid
		_ = s.PC.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.line, SDPMid: &mid})
	}
	s.etag = quoteETag(randomID())
	return answerFragment(s.PC.LocalDescription().SDP, s.closed), nil
}

// patchTransport is Patch for a Transport session. s.mu is held.
func (s *Session) patchTransport(f *fragment, ifMatch string) (string, error) {
	if f.ufrag == "" || f.ufrag == s.tr.RemoteUfrag() {
		if ifMatch == "*" && f.ufrag != "" {
			return answerFragment(s.answer, s.closed), nil // a lost restart answer, asked again
		}
		return "", nil // ICE-lite learns addresses from the checks themselves
	}
	if f.pwd == "" {
		return "", fmt.Errorf("%w: ICE restart without ice-pwd", ErrBadFragment)
	}
	ufrag, pwd, err := s.tr.Restart(f.ufrag, f.pwd)
	if err != nil {
		return "", fmt.Errorf("ICE restart: %w", err)
	}
	s.answer = replaceCredentials(s.answer, ufrag, pwd)
	s.etag = quoteETag(randomID())
	return answerFragment(s.answer, s.closed), nil
}

type fragCandidate struct{ mid, line string }

type fragment struct {
	ufrag, pwd string
	candidates []fragCandidate
}

func parseFragment(frag string) (*fragment, error) {
	f := &fragment{}
	mid := ""
	sawMedia := false
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "":
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "m="):
			sawMedia, mid = true, ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			if !sawMedia {
				return nil, fmt.Errorf("%w: candidate outside a media section", ErrBadFragment)
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, line: strings.TrimPrefix(line, "a=")})
		case strings.HasPrefix(line, "a="):
			// end-of-candidates, ice-options, group: nothing to do
		default:
			return nil, fmt.Errorf("%w: unexpected line %q", ErrBadFragment, truncate(line, 80))
		}
	}
	if f.ufrag == "" && len(f.candidates) == 0 {
		return nil, fmt.Errorf("%w: no credentials and no candidates", ErrBadFragment)
	}
	return f, nil
}

// answerFragment extracts our ICE credentials and candidates from a full
// SDP, as the body of a PATCH response: the credentials, then each media
// section the answer kept open (m= line and mid), with every candidate in
// the first of them. pion writes all candidates into its first section,
// which may be one the answer refused (closed): a client would drop
// candidates filed under a refused mid.
func answerFragment(full string, closed []string) string {
	type section struct{ mline, mid string }
	var creds, cands []string
	var secs []section
	eoc := false
	ufragDone := false
	for _, line := range strings.Split(full, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case !ufragDone && (strings.HasPrefix(line, "a=ice-ufrag:") || strings.HasPrefix(line, "a=ice-pwd:")):
			creds = append(creds, line)
			if strings.HasPrefix(line, "a=ice-pwd:") {
				ufragDone = true
			}
		case strings.HasPrefix(line, "m="):
			secs = append(secs, section{mline: line})
		case strings.HasPrefix(line, "a=mid:") && len(secs) > 0:
			secs[len(secs)-1].mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			cands = append(cands, line)
		case line == "a=end-of-candidates":
			eoc = true
		}
	}
	var b strings.Builder
	for _, c := range creds {
		b.WriteString(c + "\r\n")
	}
	first := true
	for _, sec := range secs {
		if slices.Contains(closed, sec.mid) {
			continue
		}
		b.WriteString(sec.mline + "\r\n")
		if sec.mid != "" {
			b.WriteString("a=mid:" + sec.mid + "\r\n")
		}
		if first {
			for _, c := range cands {
				b.WriteString(c + "\r\n")
			}
			if eoc {
				b.WriteString("a=end-of-candidates\r\n")
			}
			first = false
		}
	}
	return b.String()
}

func replaceCredentials(sdpText, ufrag, pwd string) string {
	lines := strings.Split(sdpText, "\n")
	for i, line := range lines {
		cr := strings.HasSuffix(line, "\r")
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			lines[i] = "a=ice-ufrag:" + ufrag
		case strings.HasPrefix(line, "a=ice-pwd:"):
			lines[i] = "a=ice-pwd:" + pwd
		default:
			continue
		}
		if cr {
			lines[i] += "\r"
		}
	}
	return strings.Join(lines, "\n")
}

func sdpValue(sdpText, prefix string) string {
	for _, line := range strings.Split(sdpText, "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func quoteETag(s string) string { return `"` + s + `"` }

// Registry holds the live sessions of one endpoint kind.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]*Session
	max      int
}

// NewRegistry returns a registry allowing at most max sessions (0: no limit).
func NewRegistry(max int) *Registry {
	return &Registry{sessions: make(map[string]*Session), max: max}
}

// Add registers s, or fails with ErrTooManySessions.
func (r *Registry) Add(s *Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.max > 0 && len(r.sessions) >= r.max {
		return fmt.Errorf("%w: limit %d", ErrTooManySessions, r.max)
	}
	r.sessions[s.ID] = s
	s.registry = r
	return nil
}

// Get returns the session with id on path.
func (r *Registry) Get(path, id string) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	if !ok || s.Path != path {
		return nil, ErrSessionNotFound
	}
	return s, nil
}

// Len is the number of live sessions.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// CloseAll closes every session, for shutdown.
func (r *Registry) CloseAll() {
	r.mu.Lock()
	list := slices.Collect(maps.Values(r.sessions))
	r.mu.Unlock()
	for _, s := range list {
		s.Close()
	}
}

func (r *Registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, id)
}
