package relay

import (
	"context"
	"slices"
	"sync"

	"github.com/pion/rtp"
)

// Simulcast layers in the relay.
//
// A simulcast track (one media section whose publisher sends several
// encodings, e.g. rids q, h and f) is still one Track: it carries the top
// layer, continuous across the publisher's own layer changes, and that is
// what frame outputs (HLS, RTMP push, recordings, composites) and relay
// links read. Besides, each layer is a hidden Track of its own, fed with
// that layer's packets as received: WebRTC viewers read one of them at a
// time (package relay/simulcast switches a viewer between them), their
// keyframe requests and NACKs go to that layer, and each layer has its own
// GOP cache and NACK history. Layer tracks are not in Stream.Tracks: only
// code that asks for layers sees them.
//
// Relay links carry only the top layer (the parent's track): an edge's
// viewers get the top layer, without a choice. Carrying every layer would
// cost each link the sum of the layers (about 1.3 times the top layer with
// browsers' 1/4-1/2-1 ladder) and a media section per layer.

// LayerInfo describes one simulcast layer of a track.
type LayerInfo struct {
	RID     string `json:"rid"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Bitrate int    `json:"bitrate"` // bits per second, measured
	// Active is false while the publisher does not send the layer (browsers
	// stop their top layers when their uplink estimate drops).
	Active bool `json:"active"`
	// Top is the layer the track itself (frame outputs, relay links) carries.
	Top bool `json:"top"`
}

// LayerStats is a layer's description with its viewers.
type LayerStats struct {
	LayerInfo
	Readers int64 `json:"viewers"`
}

// layerSet is the per-layer state of a simulcast track.
type layerSet struct {
	mu       sync.Mutex
	tracks   map[string]*Track // by rid
	describe func() []LayerInfo
}

// AddLayer makes (or, for a publisher that continues a stream with the
// same rid, takes over) the layer track rid of the publisher's i-th track,
// and returns it for WriteLayerRTP. describe tells the relay what each layer
// carries (the ingest measures it); requestKeyframe asks the publisher for a
// keyframe on this layer.
func (p *Publication) AddLayer(i int, rid string, describe func() []LayerInfo, requestKeyframe func()) *Track {
	if i < 0 || i >= len(p.tracks) {
		return nil
	}
	t := p.tracks[i]
	ls := &t.layers
	ls.mu.Lock()
	if ls.tracks == nil {
		ls.tracks = map[string]*Track{}
	}
	lt := ls.tracks[rid]
	if lt == nil {
		lt = newTrack(t.stream, t.index, t.info, t.pool, &t.stream.hub.params)
		lt.rid = rid
		lt.parent = t
		ls.tracks[rid] = lt
	}
	ls.describe = describe
	ls.mu.Unlock()
	lt.newPublisher(requestKeyframe)
	return lt
}

// WriteLayerRTP hands a packet of layer track lt (from AddLayer) to its
// readers. The payload must not be modified afterwards.
func (p *Publication) WriteLayerRTP(lt *Track, h *rtp.Header, payload []byte) {
	if lt == nil || !p.active.Load() {
		return
	}
	p.noteIn()
	lt.write(h, payload)
}

// WriteLayerSenderReport hands a layer's RTCP sender report to its readers.
func (p *Publication) WriteLayerSenderReport(lt *Track, ntp uint64, rtpTime uint32) {
	if lt == nil || !p.active.Load() {
		return
	}
	lt.senderReport(ntp, rtpTime)
}

// RID is the layer's rid for a layer track, "" for a stream's track.
func (t *Track) RID() string { return t.rid }

// Layers returns the layer tracks of a simulcast track with their
// descriptions, lowest first (by picture size, then bitrate); nil for a
// track without layers. A layer that has sent nothing yet is left out.
func (t *Track) Layers() ([]*Track, []LayerInfo) {
	ls := &t.layers
	ls.mu.Lock()
	describe := ls.describe
	byRID := make(map[string]*Track, len(ls.tracks))
	for rid, lt := range ls.tracks {
		byRID[rid] = lt
	}
	ls.mu.Unlock()
	if describe == nil {
		return nil, nil
	}
	infos := describe()
	slices.SortStableFunc(infos, func(a, b LayerInfo) int {
		if pa, pb := a.Width*a.Height, b.Width*b.Height; pa > 0 && pb > 0 && pa != pb {
			return pa - pb
		}
		return a.Bitrate - b.Bitrate
	})
	var tracks []*Track
	var out []LayerInfo
	for _, in := range infos {
		if lt := byRID[in.RID]; lt != nil {
			tracks = append(tracks, lt)
			out = append(out, in)
		}
	}
	return tracks, out
}

// layerStats describes the layers for the API, nil without layers.
func (t *Track) layerStats() []LayerStats {
	tracks, infos := t.Layers()
	if len(tracks) == 0 {
		return nil
	}
	out := make([]LayerStats, len(tracks))
	for i, lt := range tracks {
		out[i] = LayerStats{LayerInfo: infos[i], Readers: lt.readers.Load()}
	}
	return out
}

// layerByteCounts adds the layer tracks' bytes: every layer came in (the
// track's own packets are a copy of one of them), and layer readers' bytes
// went out.
func (t *Track) layerByteCounts(in, out uint64) (uint64, uint64) {
	ls := &t.layers
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.tracks) == 0 {
		return in, out
	}
	var lin uint64
	for _, lt := range ls.tracks {
		i, o := lt.byteCounts()
		lin += i
		out += o
	}
	return lin, out
}

// Layer requests: a WHEP offer may ask for one layer (?layer= on the URL).
type layerKey struct{}

// WithLayer records in ctx which layer a viewer asked for.
func WithLayer(ctx context.Context, layer string) context.Context {
	return context.WithValue(ctx, layerKey{}, layer)
}

// RequestedLayer is the layer recorded by WithLayer, "" if none.
func RequestedLayer(ctx context.Context) string {
	s, _ := ctx.Value(layerKey{}).(string)
	return s
}

// layerFields are the Track fields for layers (kept here with their code).
type layerFields struct {
	layers layerSet
	rid    string // of a layer track
	parent *Track // of a layer track
}

// HasLayers reports whether the track is a simulcast track whose layers
// the relay knows (its publisher sends layers).
func (t *Track) HasLayers() bool {
	t.layers.mu.Lock()
	defer t.layers.mu.Unlock()
	return t.layers.describe != nil
}

// TrackLayer, as a requested layer (WithLayer), asks for the track itself
// rather than a choice among its layers: relay links take the top layer,
// continuous across the publisher's layer changes, whatever their own
// feedback says (their viewers choose at the edge's own level).
const TrackLayer = "\x00track"

// newPublisher forgets the previous publisher's layers: a publisher that
// continues the stream describes its own (AddLayer), and one without
// simulcast leaves the track without layers, so viewers move back to the
// track itself rather than wait on layers nobody sends.
func (ls *layerSet) newPublisher() {
	ls.mu.Lock()
	ls.describe = nil
	ls.mu.Unlock()
}
