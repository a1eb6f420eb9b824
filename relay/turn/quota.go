package turn

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/livegate/livegate/internal/addrlimit"
)

// Default allocation quotas. A browser's PeerConnection takes one
// allocation per TURN URL it is given (UDP, TCP and TLS: up to three), so
// a user's quota fits a room page with about ten connections; an address
// is shared by everyone behind one NAT (an office whose network drops UDP
// is where TURN is used), so its quota is higher.
const (
	DefaultAllocationsPerUser = 30
	DefaultAllocationsPerIP   = 100
)

// quota bounds the allocations (RFC 8656 section 7.2 step 7: 486
// Allocation Quota Reached) per user and per client address. The user is
// the identity in a REST username (EXPIRY:IDENTITY), which every fresh
// credential of the same identity shares; credentials without one (the
// /check page's) count by their whole username, and the address quota
// bounds those anyway. IPv6 addresses count by their /64.
//
// pion asks quotaOK before it creates an allocation and reports created
// and deleted ones as events. The check reserves the slot at once, so a
// burst of requests cannot pass together; a reservation whose allocation
// was never created (the server refused it after the quota check) is
// dropped after reserveFor.
type quota struct {
	perUser, perIP int
	log            *slog.Logger

	mu      sync.Mutex
	users   map[string]int
	ips     map[string]int
	pending map[string][]reservation // by client transport address
	active  map[string]reservation   // by 5-tuple
	logged  time.Time
}

type reservation struct {
	user, ip string
	at       time.Time
}

const reserveFor = 5 * time.Second

func newQuota(perUser, perIP int, log *slog.Logger) *quota {
	return &quota{perUser: perUser, perIP: perIP, log: log, users: map[string]int{}, ips: map[string]int{},
		pending: map[string][]reservation{}, active: map[string]reservation{}}
}

// userKey is the user a REST username names.
func userKey(username string) string {
	if _, id, ok := strings.Cut(username, ":"); ok && id != "" {
		return "id:" + id
	}
	return "user:" + username
}

// ok is pion's QuotaHandler.
func (q *quota) ok(username, _ string, src net.Addr) bool {
	user, ip := userKey(username), addrlimit.Key(src.String())
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(now)
	if (q.perUser > 0 && q.users[user] >= q.perUser) || (q.perIP > 0 && q.ips[ip] >= q.perIP) {
		if now.Sub(q.logged) >= time.Second {
			q.logged = now
			q.log.Warn("TURN allocation refused: quota reached (486)", "user", strings.TrimPrefix(strings.TrimPrefix(user, "id:"), "user:"),
				"addr", ip, "user_allocations", q.users[user], "addr_allocations", q.ips[ip],
				"per_user", q.perUser, "per_addr", q.perIP)
		}
		return false
	}
	q.users[user]++
	q.ips[ip]++
	k := src.String()
	q.pending[k] = append(q.pending[k], reservation{user: user, ip: ip, at: now})
	return true
}

func fiveTuple(src, dst net.Addr, protocol string) string {
	return protocol + " " + src.String() + " " + dst.String()
}

func (q *quota) created(src, dst net.Addr, protocol, _, _ string, _ net.Addr, _ int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := src.String()
	list := q.pending[k]
	if len(list) == 0 {
		return // reserved too long ago and dropped; not counted
	}
	q.active[fiveTuple(src, dst, protocol)] = list[0]
	if len(list) == 1 {
		delete(q.pending, k)
	} else {
		q.pending[k] = list[1:]
	}
}

func (q *quota) deleted(src, dst net.Addr, protocol, _, _ string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := fiveTuple(src, dst, protocol)
	if r, ok := q.active[k]; ok {
		delete(q.active, k)
		q.releaseLocked(r)
	}
}

func (q *quota) releaseLocked(r reservation) {
	if q.users[r.user]--; q.users[r.user] <= 0 {
		delete(q.users, r.user)
	}
	if q.ips[r.ip]--; q.ips[r.ip] <= 0 {
		delete(q.ips, r.ip)
	}
}

// expireLocked drops reservations whose allocation never came.
func (q *quota) expireLocked(now time.Time) {
	for k, list := range q.pending {
		i := 0
		for ; i < len(list) && now.Sub(list[i].at) > reserveFor; i++ {
			q.releaseLocked(list[i])
		}
		switch {
		case i == len(list):
			delete(q.pending, k)
		case i > 0:
			q.pending[k] = list[i:]
		}
	}
}

// install sets the quota's hooks on sc.
func (q *quota) install(sc *pionturn.ServerConfig) {
	sc.QuotaHandler = q.ok
	sc.EventHandler.OnAllocationCreated = q.created
	sc.EventHandler.OnAllocationDeleted = q.deleted
}
