// Package tree makes a node an edge of a relay tree: a WHEP request for a
// stream the node lacks pulls it once from a parent over WHEP (the edge is
// a WHEP client of its parent; parents are configured, or looked up where
// the stream originates through Params.Locate), fans it out locally, fails
// over to another parent when the link breaks (viewers keep their sessions
// through the hub's grace period) and lets go after the last viewer has
// left.
package tree

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtcclient"
)

// Params configures a Puller.
type Params struct {
	Hub *relay.Hub
	// Parents are base URLs of parent nodes (http://host:port), tried in
	// order; any WHEP server works.
	Parents []string `flag:"relay-parents" list:"urls" help:"comma-separated base URLs of parent nodes (http://origin:8080): pull streams this node lacks from them over WHEP"`
	// Locate, used when Parents is empty, finds the nodes that have path
	// (the cluster directory: where the stream originates). An empty
	// answer means no node has it. It is called for every dial, so a
	// stream that moved to another origin is followed.
	Locate func(ctx context.Context, path string) ([]string, error)
	// Client configures the WHEP client; its Token is the cluster key.
	Client rtcclient.Options
	// Linger keeps a pull this long after its last viewer left (default 30 s).
	Linger time.Duration `flag:"relay-linger" help:"keep pulling a stream this long after its last viewer left"`
	// NotFoundTTL remembers that no parent has a stream, so a burst of
	// requests for it does not become a burst of pulls (default 2 s).
	NotFoundTTL time.Duration
	// Retry bounds how long a broken link is re-tried before the pull gives
	// up (default 15 s; the hub's grace keeps viewers meanwhile).
	Retry time.Duration
	// DeadAfter is how long a link that was carrying video may go without
	// a packet before the edge looks for another parent (default 500 ms;
	// four times that for audio-only streams). A silent link is only
	// replaced by one that a parent accepts, so a stream whose publisher
	// paused stays where it is; a parent that stops answering its
	// keepalives is dropped by the Client API's ICE timeouts (the gateway
	// sets them from DeadAfter, see rtc.Engine.RelayAPI).
	DeadAfter time.Duration `flag:"relay-dead-after" help:"a relay link that carried video and got nothing (media or keepalive answers) for this long is replaced by a pull from another parent (audio-only streams: 4x)"`
	Logger    *slog.Logger
}

// Puller pulls streams from parents on demand.
type Puller struct {
	p      Params
	ctx    context.Context
	cancel context.CancelFunc
	unsub  func()
	wg     sync.WaitGroup

	dials     atomic.Int64
	failovers atomic.Int64

	mu       sync.Mutex
	pulls    map[string]*pull
	notFound map[string]time.Time
	moving   map[string]bool // local streams in grace watched for a republish elsewhere
}

type pull struct {
	path   string
	resume bool // the first link resumes the stream for viewers mid-stream
	cancel context.CancelFunc
	ready  chan struct{} // closed when the first link is up or failed
	err    error         // set before ready closes
	stream *relay.Stream
	linger *time.Timer
	parent string
}

// DefaultParams are the settings a zero Params field stands for.
func DefaultParams() Params {
	return Params{
		Linger:      30 * time.Second,
		NotFoundTTL: 2 * time.Second,
		Retry:       15 * time.Second,
		DeadAfter:   500 * time.Millisecond,
	}
}

// New starts a Puller; Close stops every pull.
func New(p Params) *Puller {
	d := DefaultParams()
	if p.Linger <= 0 {
		p.Linger = d.Linger
	}
	if p.NotFoundTTL <= 0 {
		p.NotFoundTTL = d.NotFoundTTL
	}
	if p.Retry <= 0 {
		p.Retry = d.Retry
	}
	if p.DeadAfter <= 0 {
		p.DeadAfter = d.DeadAfter
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	pl := &Puller{p: p, ctx: ctx, cancel: cancel, pulls: map[string]*pull{}, notFound: map[string]time.Time{},
		moving: map[string]bool{}}
	pl.unsub = p.Hub.Subscribe(pl.onEvent)
	return pl
}

// ErrClosed: the Puller was closed.
var ErrClosed = errors.New("relay puller closed")

// Close ends all pulls and waits for them.
func (pl *Puller) Close() {
	pl.unsub()
	// Cancelled under mu: every wg.Add happens under mu after checking
	// pl.ctx, so none can start once Wait may be waiting.
	pl.mu.Lock()
	pl.cancel()
	pl.mu.Unlock()
	pl.wg.Wait()
}

// Ensure makes path available locally, pulling it from a parent if
// needed. It returns relay.ErrNotFound quickly when no parent has it.
func (pl *Puller) Ensure(ctx context.Context, path string) error {
	if st, ok := pl.p.Hub.Get(path); ok && st.Live() {
		return nil
	}
	if len(pl.p.Parents) == 0 && pl.p.Locate == nil {
		return relay.ErrNotFound
	}
	pl.mu.Lock()
	if pl.ctx.Err() != nil {
		pl.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrClosed, path)
	}
	if until, ok := pl.notFound[path]; ok && time.Now().Before(until) {
		pl.mu.Unlock()
		return fmt.Errorf("%w: %s (no parent has it)", relay.ErrNotFound, path)
	}
	pu := pl.pulls[path]
	if pu == nil {
		pctx, cancel := context.WithCancel(pl.ctx)
		// A child replacing a broken link asks for it: the whole way up
		// must then start on cached GOPs (see relay.CacheStartSink).
		pu = &pull{path: path, cancel: cancel, ready: make(chan struct{}), resume: relay.IsRelayReader(ctx)}
		pl.pulls[path] = pu
		pl.wg.Add(1)
		go func() {
			defer pl.wg.Done()
			pl.run(pctx, pu)
		}()
	}
	pl.mu.Unlock()
	select {
	case <-pu.ready:
		return pu.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run keeps one path pulled until its context ends or no parent has it.
func (pl *Puller) run(ctx context.Context, pu *pull) {
	log := pl.p.Logger.With("stream", pu.path)
	defer func() {
		pl.mu.Lock()
		if pl.pulls[pu.path] == pu {
			delete(pl.pulls, pu.path)
		}
		if pu.linger != nil {
			pu.linger.Stop()
		}
		pl.mu.Unlock()
		pu.cancel()
	}()
	first := true
	start := 0
	var brokenSince time.Time
	// A stream that exists here already (its publisher moved away) has
	// viewers mid-stream: its first link resumes it, like a failover.
	_, existed := pl.p.Hub.Get(pu.path)
	existed = existed || pu.resume
	for backoff := retryMin; ctx.Err() == nil; {
		l, parent, idx, err := pl.dialAny(ctx, pu.path, start, "", !first || existed)
		if err != nil {
			if first {
				if errors.Is(err, relay.ErrNotFound) {
					pl.mu.Lock()
					pl.rememberNotFound(pu.path)
					pl.mu.Unlock()
				}
				pu.err = err
				close(pu.ready)
				return
			}
			if time.Since(brokenSince) > pl.p.Retry {
				log.Warn("relay link not restored; giving up", "err", err)
				return
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			// Short and capped: the stream may be back (republished on
			// another origin) any moment, and viewers wait meanwhile.
			backoff = min(backoff*2, retryMax)
			continue
		}
		pub, err := pl.p.Hub.Publish(pu.path, l.infos, l)
		if err != nil {
			l.close()
			l.drain()
			if first {
				pu.err = err
				if errors.Is(err, relay.ErrAlreadyLive) {
					pu.err = nil // published here meanwhile: nothing to pull
				}
				close(pu.ready)
			}
			return
		}
		if !first {
			pl.failovers.Add(1)
			log.Info("relay link restored", "parent", parent, "after", time.Since(brokenSince).Round(time.Millisecond))
		}
		pl.setLink(pu, pub, parent, first)
		log.Info("relay link up", "parent", parent, "tracks", len(l.infos))
		if first {
			first = false
			close(pu.ready)
			pl.wg.Add(1)
			go func() {
				defer pl.wg.Done()
				pl.watchHop(ctx, pu)
			}()
		}
		backoff = retryMin
		l, parent, idx, pub = pl.follow(ctx, pu, l, parent, idx, pub)
		l.close()
		l.drain()
		pub.End("relay link ended")
		if ctx.Err() != nil {
			log.Info("relay link released", "parent", parent)
			return
		}
		log.Warn("relay link lost; failing over", "parent", parent, "why", l.reason())
		brokenSince = time.Now()
		start = idx + 1 // another parent first; the same one again later
	}
}

// Retry pacing of a broken pull.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 500 * time.Millisecond
)

// follow forwards a link until it breaks or ctx ends. A link that goes
// silent while its parent stops answering keepalives (or, with the
// directory, while the directory names another node for the stream) is
// replaced without letting go of the stream: at half the dead time another
// parent that has the stream is dialed and kept ready; at the dead time
// (or when ICE gives up) it takes the stream over, which viewers see as
// one publisher handing over to the next. If media comes back first, the
// standby is dropped. A silent link whose parent is alive is left alone:
// the gap is upstream (a paused publisher, or the parent healing its own
// link), and every edge below it moving would only multiply the churn.
// It returns the link it ended on.
func (pl *Puller) follow(ctx context.Context, pu *pull, l *link, parent string, idx int, pub *relay.Publication) (*link, string, int, *relay.Publication) {
	l.start(pub)
	var (
		standby     *link
		sParent     string
		sIdx        int
		lastTry     time.Time
		recheck     = max(2*pl.p.DeadAfter, 500*time.Millisecond)
		dropStandby = func() { standby.close(); standby.drain(); standby = nil }
		log         = pl.p.Logger.With("stream", pu.path)
		located     = len(pl.p.Parents) == 0 && pl.p.Locate != nil
		watch       = func(quiet, lim time.Duration) bool {
			if quiet < lim/5 {
				l.forgetAnswers() // media flows: no need to ask ICE (it costs a call into its loop)
				return false
			}
			alive := l.parentAnswered(lim / 3)
			if standby != nil {
				return quiet < lim/2 || quiet >= lim // back, or dead
			}
			// A parent that still answers its keepalives is up and has
			// nothing to send: its own source paused or it is healing its
			// own link. Moving elsewhere would only churn, unless the
			// directory says the stream now comes from another node.
			return quiet >= lim/2 && time.Since(lastTry) >= recheck && (!alive || located)
		}
	)
	for {
		ev := l.wait(ctx, pub, pl.p.DeadAfter, watch)
		lim := l.silentFor(pl.p.DeadAfter)
		switch {
		case ev == evDead && standby != nil:
			// Broken (its ICE gave up) while a standby is ready: use it.
		case ev != evSilent:
			if standby != nil {
				dropStandby()
			}
			return l, parent, idx, pub
		case standby == nil:
			lastTry = time.Now()
			var err error
			standby, sParent, sIdx, err = pl.dialAny(ctx, pu.path, idx+1, parent, true)
			if err != nil {
				log.Debug("relay link silent; no other parent has the stream", "parent", parent, "err", err)
				standby = nil
				if errors.Is(err, errNoOther) {
					// Nothing was dialed, only the directory asked (the
					// stream has not moved yet): ask again soon, as a
					// republish elsewhere shows up there at once.
					lastTry = time.Now().Add(min(250*time.Millisecond, pl.p.DeadAfter/2) - recheck)
				}
				continue
			}
			if l.quiet() < lim {
				continue // ready; the next checks decide
			}
		case l.quiet() < lim/2:
			log.Debug("relay link silent for a moment; standby dropped", "parent", parent, "standby", sParent)
			dropStandby()
			continue
		}
		// Dead: the standby takes over. Stalled lets the hub hand the
		// stream to it with the continuity a reconnecting publisher gets.
		quiet := l.quiet()
		pub.SetStalled(true)
		npub, err := pl.p.Hub.Publish(pu.path, standby.infos, standby)
		if err != nil {
			pub.SetStalled(false)
			log.Warn("relay link silent; standby refused", "parent", parent, "standby", sParent, "err", err)
			dropStandby()
			continue
		}
		log.Warn("relay link silent; moved to another parent", "from", parent, "to", sParent, "silent", quiet.Round(time.Millisecond))
		l.closeWith("replaced while silent") // its readers end with its PeerConnection
		pl.failovers.Add(1)
		l, parent, idx, pub = standby, sParent, sIdx, npub
		standby, lastTry = nil, time.Time{}
		pl.setLink(pu, pub, parent, false)
		l.start(pub)
	}
}

func (pl *Puller) setLink(pu *pull, pub *relay.Publication, parent string, first bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pu.stream, pu.parent = pub.Stream(), parent
	if first {
		pl.armLingerLocked(pu)
	}
}

// parents returns the static parents, or asks Locate (bounded by 2 s).
func (pl *Puller) parents(ctx context.Context, path string) ([]string, error) {
	if len(pl.p.Parents) > 0 || pl.p.Locate == nil {
		return pl.p.Parents, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ps, err := pl.p.Locate(lctx, path)
	if err != nil {
		return nil, fmt.Errorf("locating %s: %w", path, err)
	}
	return ps, nil
}

// dialAny tries the parents in turn from index start, skipping the one
// named skip. resume asks the parent to start the link on its cached GOP
// (the link replaces one that broke).
func (pl *Puller) dialAny(ctx context.Context, path string, start int, skip string, resume bool) (*link, string, int, error) {
	parents, err := pl.parents(ctx, path)
	if err != nil {
		return nil, "", 0, err
	}
	n := len(parents)
	notFound, skipped := 0, 0
	var last error
	for i := range n {
		idx := (start + i) % n
		if parents[idx] == skip {
			notFound++
			skipped++
			continue
		}
		pl.dials.Add(1)
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		opts := pl.p.Client
		if resume {
			opts.Header = http.Header{relay.RelayResumeHeader: {"1"}}
		}
		l, err := dial(dctx, parents[idx], path, opts, pl.background)
		cancel()
		if err == nil {
			return l, parents[idx], idx, nil
		}
		var he *rtcclient.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			notFound++
		}
		last = fmt.Errorf("parent %s: %w", parents[idx], err)
	}
	if skipped == n && n > 0 {
		return nil, "", 0, errNoOther
	}
	if notFound == n {
		return nil, "", 0, fmt.Errorf("%w: %s (no parent has it)", relay.ErrNotFound, path)
	}
	return nil, "", 0, last
}

// errNoOther: the only parent is the one to avoid (nothing was dialed).
var errNoOther = fmt.Errorf("%w: no other parent", relay.ErrNotFound)

// background runs f on the Puller's wait group (Close waits for it). Its
// callers run on that group themselves (a pull closing its link), so the
// count is above zero and Close cannot have finished waiting.
func (pl *Puller) background(f func()) {
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		f()
	}()
}

// onEvent follows viewers of pulled streams, and local streams whose
// publisher left. It runs under hub locks, so it only touches the Puller's
// own state and timers.
func (pl *Puller) onEvent(e relay.Event) {
	if e.Type == relay.PublisherLeft {
		pl.mu.Lock()
		pl.onPublisherLeftLocked(e.Path)
		pl.mu.Unlock()
		return
	}
	if e.Type != relay.ReaderJoined && e.Type != relay.ReaderLeft {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pu := pl.pulls[e.Path]
	if pu == nil || pu.stream == nil {
		return
	}
	pl.armLingerLocked(pu)
}

// armLingerLocked starts the linger timer when a pull has no viewers and
// stops it when it has some. Caller holds pl.mu.
func (pl *Puller) armLingerLocked(pu *pull) {
	if pu.stream.Viewers() > 0 {
		if pu.linger != nil {
			pu.linger.Stop()
			pu.linger = nil
		}
		return
	}
	if pu.linger == nil {
		pu.linger = time.AfterFunc(pl.p.Linger, pu.cancel)
	}
}

// Relaying reports whether path is being pulled from a parent (or a pull
// of it is starting), so that the cluster directory does not advertise a
// relayed stream as originating here.
func (pl *Puller) Relaying(path string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.pulls[path] != nil
}

// Dials counts WHEP requests made to parents.
func (pl *Puller) Dials() int64 { return pl.dials.Load() }

// Failovers counts links replaced after they broke or went silent.
func (pl *Puller) Failovers() int64 { return pl.failovers.Load() }

// Link describes an active pull, for the API.
type Link struct {
	Path   string `json:"path"`
	Parent string `json:"parent"`
}

// Links lists the active pulls.
func (pl *Puller) Links() []Link {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []Link
	for _, pu := range pl.pulls {
		if pu.stream != nil {
			out = append(out, Link{Path: pu.path, Parent: pu.parent})
		}
	}
	return out
}

// maxNotFound bounds the not-found cache: paths are chosen by clients, so
// without a bound every distinct made-up path would stay in memory.
const maxNotFound = 4096

// rememberNotFound caches that no parent has path, dropping expired
// entries (and, if the cache is still full, arbitrary ones) to stay within
// maxNotFound. pl.mu is held.
func (pl *Puller) rememberNotFound(path string) {
	if len(pl.notFound) >= maxNotFound {
		now := time.Now()
		for p, until := range pl.notFound {
			if now.After(until) {
				delete(pl.notFound, p)
			}
		}
		for p := range pl.notFound {
			if len(pl.notFound) < maxNotFound {
				break
			}
			delete(pl.notFound, p)
		}
	}
	pl.notFound[path] = time.Now().Add(pl.p.NotFoundTTL)
}
