package hls

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// partWatch answers requests for the part a playlist hints at
// (EXT-X-PRELOAD-HINT) when it is complete. gohlslib can block such a
// request itself, but a hint request still waiting when its muxer closes
// leaves gohlslib's lock held, which strands every other waiting request:
// so no request reaches gohlslib before its part exists.
type partWatch struct {
	mu      sync.Mutex
	last    int64         // highest complete part number; -1: none yet
	changed chan struct{} // closed and replaced when last grows
	gen     uint64        // video frames written
	synced  uint64        // gen when last was read
	tick    chan struct{} // closed and replaced by every video frame
	// The playlist's edge, for blocking reloads: segment next is in
	// progress with nparts complete parts; the one before it had
	// prevParts listed.
	next, nparts, prevParts uint64
}

func (p *partWatch) init() {
	p.last = -1
	p.synced = ^uint64(0)
	p.changed = make(chan struct{})
	p.tick = make(chan struct{})
}

// frame is called by the writer after each video frame: a part may have
// completed.
func (p *partWatch) frame() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	close(p.tick)
	p.tick = make(chan struct{})
}

// sync reads the highest complete part from the video playlist, at most
// once per video frame however many requests wait. It runs on a request's
// goroutine, never the writer's: rendering a playlist can wait for the
// muxer.
func (p *partWatch) sync(m *muxer) {
	p.mu.Lock()
	if p.synced == p.gen {
		p.mu.Unlock()
		return
	}
	p.synced = p.gen
	p.mu.Unlock()
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	req, _ := http.NewRequest(http.MethodGet, "/video1_stream.m3u8", nil)
	m.hls.Handle(rec, req)
	last := int64(-1)
	body := rec.body.String()
	next, nparts, prevParts, edgeOK := playlistEdge(body)
	for {
		i := strings.Index(body, "#EXT-X-PART:")
		if i < 0 {
			break
		}
		body = body[i+len("#EXT-X-PART:"):]
		if n, ok := partNumber(body); ok && n > last {
			last = n
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if edgeOK && next >= p.next {
		p.next, p.nparts, p.prevParts = next, nparts, prevParts
	}
	if last > p.last {
		p.last = last
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// playlistEdge reads where a gohlslib media playlist ends: the number of
// the segment in progress, its complete parts and the parts listed for the
// segment before it.
func playlistEdge(pl string) (next, nparts, prevParts uint64, ok bool) {
	var count, parts uint64
	first, seen := uint64(0), false
	for _, l := range strings.Split(pl, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			n, err := strconv.ParseUint(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			first, seen = n, err == nil
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			parts++
		case l != "" && !strings.HasPrefix(l, "#"):
			count++
			prevParts, parts = parts, 0
		}
	}
	return first + count, parts, prevParts, seen
}

// has reports whether the playlist has segment msn's part (LL-HLS
// _HLS_msn/_HLS_part as gohlslib reads them: a part index past the end of
// its segment means the next segment's first part), or whether a blocking
// reload for it must not wait (gohlslib answers it at once: too far ahead,
// or gone).
func (p *partWatch) has(msn, part uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.next == 0:
		return false
	case msn+1 < p.next:
		return true
	case msn+1 == p.next:
		return part < p.prevParts || p.nparts > 0
	case msn == p.next:
		return part < p.nparts
	case msn == p.next+1:
		return false
	}
	return true // more than one segment ahead: gohlslib says 400
}

// waitPlaylist blocks until the playlist has segment msn's part (see has).
func (p *partWatch) waitPlaylist(ctx context.Context, m *muxer, msn, part uint64) error {
	for {
		_, _, tick := p.state()
		if m.content.Load() {
			p.sync(m)
			if p.has(msn, part) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return m.failure()
		case <-tick:
		}
	}
}

// partNumber reads N of the first URI="..._partN.mp4..." in s.
func partNumber(s string) (int64, bool) {
	_, rest, ok := strings.Cut(s, `URI="`)
	if !ok {
		return 0, false
	}
	uri, _, _ := strings.Cut(rest, `"`)
	uri, _, _ = strings.Cut(uri, "?")
	i := strings.LastIndex(uri, "_part")
	if i < 0 || !strings.HasSuffix(uri, ".mp4") {
		return 0, false
	}
	n, err := strconv.ParseInt(uri[i+len("_part"):len(uri)-len(".mp4")], 10, 64)
	return n, err == nil
}

func (p *partWatch) state() (int64, <-chan struct{}, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.changed, p.tick
}

// wait blocks until part n is complete. It reports false when n is not
// the next part (it would never come, or is long gone).
func (p *partWatch) wait(ctx context.Context, m *muxer, n int64) (bool, error) {
	for {
		last, changed, tick := p.state()
		if n > last && m.content.Load() {
			p.sync(m)
			last, changed, tick = p.state()
		}
		if n <= last {
			return true, nil
		}
		if n > last+1 && last >= 0 {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-m.done:
			return false, m.failure()
		case <-changed:
		case <-tick:
		}
	}
}
