package tree

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/livegate/livegate/relay"
)

// hopEvery is how often a pull asks its parent how far behind the
// publisher the parent is, to tell what the last hop adds.
const hopEvery = 2 * time.Second

// parentStream is the part of a parent's GET /api/v1/streams/ROOM/NAME
// that the hop measurement needs.
type parentStream struct {
	Tracks []struct {
		Kind  string            `json:"kind"`
		Delay *relay.DelayStats `json:"delay"`
	} `json:"tracks"`
}

// watchHop keeps the stream's tracks informed of the parent's delay from
// the publisher until ctx ends. A parent that is not livegate (any WHEP
// server may be a parent) or does not answer leaves it unknown.
func (pl *Puller) watchHop(ctx context.Context, pu *pull) {
	t := time.NewTicker(hopEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pl.mu.Lock()
		parent, st := pu.parent, pu.stream
		pl.mu.Unlock()
		if st == nil || parent == "" {
			continue
		}
		delays, err := pl.parentDelays(ctx, parent, pu.path)
		for _, tr := range st.Tracks() {
			d := time.Duration(0)
			if err == nil {
				d = delays[string(tr.Info().Kind)]
			}
			tr.SetParentDelay(d)
		}
	}
}

// parentDelays asks parent for its median delay from the publisher, by
// track kind.
func (pl *Puller) parentDelays(ctx context.Context, parent, path string) (map[string]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(parent, "/")+"/api/v1/streams/"+path, nil)
	if err != nil {
		return nil, err
	}
	if pl.p.Client.Token != "" {
		req.Header.Set("Authorization", "Bearer "+pl.p.Client.Token)
	}
	c := pl.p.Client.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("parent's stream info: HTTP %d", resp.StatusCode)
	}
	var ps parentStream
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ps); err != nil {
		return nil, fmt.Errorf("parent's stream info: %w", err)
	}
	out := map[string]time.Duration{}
	for _, tr := range ps.Tracks {
		if tr.Delay != nil && tr.Delay.Samples > 0 {
			out[tr.Kind] = time.Duration(tr.Delay.P50Ms * float64(time.Millisecond))
		}
	}
	return out, nil
}
