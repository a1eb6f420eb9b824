package lite

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// ICE-lite: the peer answers binding requests (connectivity checks and
// consent freshness) and never runs checks of its own, except the nudge.
// LocalCredentials are the ICE ufrag and password of the answer.
func (p *Peer) LocalCredentials() (ufrag, pwd string) {
	c := p.ice.Load()
	return c.localUfrag, c.localPwd
}

// RemoteUfrag is the viewer's current ICE ufrag.
func (p *Peer) RemoteUfrag() string { return p.ice.Load().remoteUfrag }

// Restart is an ICE restart: new remote credentials, new local ones. DTLS
// and SRTP carry on.
func (p *Peer) Restart(remoteUfrag, remotePwd string) (ufrag, pwd string, err error) {
	old := p.ice.Load()
	c := &iceCreds{localUfrag: randString(8), localPwd: randString(24), remoteUfrag: remoteUfrag, remotePwd: remotePwd}
	if err := p.t.restartICE(p, old, c); err != nil {
		return "", "", err
	}
	return c.localUfrag, c.localPwd, nil
}

// onBinding answers a STUN binding request addressed to this peer's ufrag,
// from a UDP address or (tcp set) over an ICE-TCP connection.
func (p *Peer) onBinding(m *stun.Message, from netip.AddrPort, tcp *tcpPath) {
	c := p.ice.Load()
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return
	}
	if _, rem, _ := strings.Cut(string(user), ":"); rem != c.remoteUfrag {
		return // an old ICE session's check, or someone guessing
	}
	if err := stun.NewShortTermIntegrity(c.localPwd).Check(m); err != nil {
		return
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		stun.NewShortTermIntegrity(c.localPwd), stun.Fingerprint)
	if err != nil {
		return
	}
	here := &remote{ap: from, tcp: tcp}
	if tcp == nil {
		here.ua = net.UDPAddrFromAddrPort(from)
		p.t.learn(p, from)
	}
	_ = p.sendTo(here, resp.Raw)
	p.lastCheck.Store(time.Now().UnixNano())
	// ICE-lite: the viewer (controlling) nominates; until it does, its
	// first working path is where DTLS answers go.
	nominated := m.Contains(stun.AttrUseCandidate)
	if cur := p.sel.Load(); cur == nil || (nominated && (cur.ap != from || cur.tcp != tcp)) {
		p.sel.Store(here)
	}
	if nominated {
		p.nominated.Store(true)
	} else if !p.nominated.Load() && p.nudges.Add(1) <= maxNudges {
		p.nudge(c, here)
	}
}

// maxNudges bounds the binding requests a peer sends before nomination.
const maxNudges = 4

// nudge sends the viewer a binding request on a path its check just
// proved. A lite agent need not check anything, but some full agents
// (pion's among them) nominate a pair only on their next check tick (200
// ms) unless the other side sends a request on it: this one lets them
// nominate at once. The answer is read and dropped by the transport.
func (p *Peer) nudge(c *iceCreds, r *remote) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(c.remoteUfrag+":"+c.localUfrag),
		iceControlled(p.tieBreaker), icePriority(1853824767),
		stun.NewShortTermIntegrity(c.remotePwd), stun.Fingerprint)
	if err != nil {
		return
	}
	_ = p.sendTo(r, req.Raw)
}

type iceControlled uint64

func (v iceControlled) AddTo(m *stun.Message) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	m.Add(stun.AttrICEControlled, b[:])
	return nil
}

type icePriority uint32

func (v icePriority) AddTo(m *stun.Message) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	m.Add(stun.AttrPriority, b[:])
	return nil
}

// onTCP takes one frame from an ICE-TCP connection of the peer.
func (p *Peer) onTCP(b []byte, tp *tcpPath) {
	if len(b) == 0 {
		return
	}
	if b[0] < 4 {
		if !stun.IsMessage(b) {
			return
		}
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() == nil && m.Type == stun.BindingRequest {
			p.onBinding(m, tp.from, tp)
		}
		return
	}
	p.onPacket(b, tp.from)
}

func randString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b)
}
