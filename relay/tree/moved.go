package tree

import (
	"context"
	"time"
)

// movedEvery is how often a stream whose local publisher left is looked up
// in the directory during its grace period.
const movedEvery = 250 * time.Millisecond

// onPublisherLeftLocked follows a stream published here whose publisher left,
// when the node finds streams through the directory: if the publisher
// comes back on another node (the old origin is alive but a load balancer
// sent the host elsewhere), the stream is pulled from there, and this
// node's viewers and children continue as for a reconnect. Caller holds
// pl.mu (from onEvent, under hub locks): it only starts a goroutine, and
// not once Close has cancelled pl.ctx (which it does under pl.mu before
// waiting on pl.wg).
func (pl *Puller) onPublisherLeftLocked(path string) {
	if len(pl.p.Parents) > 0 || pl.p.Locate == nil || pl.pulls[path] != nil || pl.moving[path] || pl.ctx.Err() != nil {
		return
	}
	pl.moving[path] = true
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		defer func() {
			pl.mu.Lock()
			delete(pl.moving, path)
			pl.mu.Unlock()
		}()
		pl.followMoved(path)
	}()
}

// followMoved waits, while the stream is in its grace period, for the
// directory to name another node for it, and then pulls it.
func (pl *Puller) followMoved(path string) {
	t := time.NewTicker(movedEvery)
	defer t.Stop()
	for {
		select {
		case <-pl.ctx.Done():
			return
		case <-t.C:
		}
		st, ok := pl.p.Hub.Get(path)
		if !ok || st.Live() {
			return // ended, or its publisher is back here
		}
		parents, err := pl.parents(pl.ctx, path)
		if err != nil || len(parents) == 0 {
			continue // still named here (or the directory is down)
		}
		pl.p.Logger.Info("stream republished on another node; pulling it for the viewers here", "stream", path, "from", parents)
		ctx, cancel := context.WithTimeout(pl.ctx, 10*time.Second)
		err = pl.Ensure(ctx, path)
		cancel()
		if err != nil {
			pl.p.Logger.Warn("cannot pull a stream republished elsewhere", "stream", path, "err", err)
		}
		return
	}
}
