package whep

import (
	"log/slog"
	"sync"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtc/lite"
)

// liteLife is a lite viewer's life after its answer, without a goroutine
// of its own (a parked goroutine per viewer costs its stack, a few KB): its
// readers are attached from the peer's OnConnected, a timer ends a viewer
// that does not connect, the session's close detaches it, and one watcher
// per stream (streamEnds) closes the viewers of a stream that ends.
type liteLife struct {
	s     *Server
	sess  *rtc.Session
	lp    *lite.Peer
	st    *relay.Stream
	plans []plan
	sinks []*liteSink
	log   *slog.Logger

	mu        sync.Mutex
	started   bool // start ran: sess and the rest are set
	connected bool // OnConnected ran (maybe before start)
	ended     bool
	joined    bool
	attached  []viewerReader
	timer     *time.Timer
	unwatch   func()
}

// onConnected is the peer's OnConnected: it runs on the peer's handshake
// goroutine, which ends after it.
func (v *liteLife) onConnected() {
	v.mu.Lock()
	v.connected = true
	ready := v.started && !v.ended
	v.mu.Unlock()
	if ready {
		v.attach()
	}
}

// start runs once the session is registered.
func (v *liteLife) start() {
	v.mu.Lock()
	v.started = true
	v.timer = time.AfterFunc(v.s.p.ConnectTimeout, v.connectTimeout)
	v.unwatch = v.s.ends.watch(v.s.Go, v.st, func() {
		v.log.Info("stream ended; closing viewer")
		v.sess.Close()
	})
	connected := v.connected
	v.mu.Unlock()
	v.sess.OnClose(v.end)
	if connected {
		v.attach()
	}
}

func (v *liteLife) connectTimeout() {
	v.mu.Lock()
	late := !v.connected && !v.ended
	v.mu.Unlock()
	if late {
		v.log.Warn("viewer did not connect in time; ending session", "timeout", v.s.p.ConnectTimeout)
		v.sess.Close()
	}
}

// attach joins the stream and attaches a reader per section; a viewer that
// cannot have all of them ends.
func (v *liteLife) attach() {
	v.mu.Lock()
	ended := v.ended
	v.mu.Unlock()
	if ended {
		return
	}
	v.timer.Stop()
	if err := v.st.Join(); err != nil {
		v.log.Warn("cannot attach viewer", "err", err)
		v.sess.Close()
		return
	}
	var attached []viewerReader
	complete := true
	for i, pl := range v.plans {
		r, err := attach(v.st, pl, v.sinks[i], v.log)
		if err != nil {
			v.log.Warn("cannot attach viewer", "err", err)
			complete = false
			break
		}
		v.sinks[i].reader.Store(&readerRef{r})
		attached = append(attached, r)
	}
	v.mu.Lock()
	v.joined = true
	v.attached = attached
	ended = v.ended
	v.mu.Unlock()
	if ended {
		v.detach(attached, true) // the session ended while attaching
	} else if !complete {
		v.sess.Close()
	}
}

// end is the session's OnClose.
func (v *liteLife) end() {
	v.mu.Lock()
	if v.ended {
		v.mu.Unlock()
		return
	}
	v.ended = true
	attached, joined, unwatch := v.attached, v.joined, v.unwatch
	v.attached, v.joined = nil, false
	if v.timer != nil {
		v.timer.Stop()
	}
	v.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	v.detach(attached, joined)
	fb := &v.lp.Feedback
	v.log.Info("viewer session ended", "nacks", fb.NACKs.Load(), "keyframe_requests", fb.KeyframeReqs.Load(),
		"receiver_reports", fb.ReceiverReports.Load(), "fraction_lost", fb.FractionLost.Load())
}

func (v *liteLife) detach(attached []viewerReader, joined bool) {
	for _, r := range attached {
		r.Close()
	}
	if joined {
		v.st.Leave()
	}
}

// streamEnds runs callbacks when a stream ends: one goroutine per stream
// that has lite viewers, not one per viewer. It stops when its last
// viewer unregisters.
type streamEnds struct {
	mu sync.Mutex
	m  map[*relay.Stream]*streamWatch
}

type streamWatch struct {
	fns  map[uint64]func()
	next uint64
	stop chan struct{}
}

// watch runs f when st ends, unless the returned function ran first. A
// stream's watcher goroutine is started with spawn (the server's, so
// that Close waits for it).
func (e *streamEnds) watch(spawn func(func()), st *relay.Stream, f func()) (unwatch func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[*relay.Stream]*streamWatch{}
	}
	w := e.m[st]
	if w == nil {
		w = &streamWatch{fns: map[uint64]func(){}, stop: make(chan struct{})}
		e.m[st] = w
		spawn(func() {
			select {
			case <-st.Done():
			case <-w.stop:
				return
			}
			e.mu.Lock()
			if e.m[st] == w {
				delete(e.m, st)
			}
			fns := w.fns
			w.fns = nil
			e.mu.Unlock()
			for _, f := range fns {
				f()
			}
		})
	}
	id := w.next
	w.next++
	w.fns[id] = f
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if w.fns == nil {
			return // st ended: the callbacks are running
		}
		delete(w.fns, id)
		if len(w.fns) == 0 && e.m[st] == w {
			delete(e.m, st)
			close(w.stop)
		}
	}
}
