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
	if last > p.last {
		p.last = last
		close(p.changed)
		p.changed = make(chan struct{})
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
