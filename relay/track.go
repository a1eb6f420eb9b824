package relay

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay/codec"
)

// Codec describes a track's codec as negotiated with its publisher. It is
// codec.Codec, kept under this name for the core's callers.
type Codec = codec.Codec

// TrackInfo describes one published track.
type TrackInfo struct {
	Kind  codec.Kind `json:"kind"`
	Codec Codec      `json:"codec"`
}

// Track is one media track of a stream. Its publisher-facing state (the
// mapping to output numbering, the GOP cache, the reader lists) is guarded by
// mu, which the ingest goroutine holds briefly per packet; the hot path of
// readers does not touch it.
type Track struct {
	info   TrackInfo
	stream *Stream
	index  int
	pool   *pool
	hist   *history

	mu sync.Mutex
	// Mapping from the current publisher's numbering to the output.
	remap      bool
	seqOff     uint16
	tsOff      uint32
	lastOut    rtp.Header // last in-order output header
	lastWall   time.Time
	haveOut    bool
	prevInTS   uint32
	prevInSeen bool
	gop        []*Packet
	gopOK      bool
	gopAt      time.Time // arrival of the cached keyframe
	maxGOP     int
	keyWait    time.Duration
	shards     []atomic.Pointer[[]*Reader] // one reader list per worker
	// lost holds, per worker, the reader list of the last packet that
	// worker's readers missed (dropped, or a new publisher's numbering)
	// until the next job queued for it tells the worker, in queue order,
	// that those readers must wait for a keyframe.
	lost []*[]*Reader

	keyframe        atomic.Pointer[func()]
	lastKeyReq      atomic.Int64
	keyPending      atomic.Bool  // a deferred keyframe request is scheduled
	lastKeyframe    atomic.Int64 // UnixNano of the last keyframe from the publisher
	keyReqInterval  time.Duration
	keyReqsSent     atomic.Uint64
	keyReqsReceived atomic.Uint64

	// Keyframe cadence for readers that cut on keyframes (CadenceSink).
	keyMax         time.Duration
	cadenceReaders atomic.Int64
	cadenceAsk     atomic.Int64 // UnixNano of the last cadence request
	cadenceAsked   atomic.Uint64
	cadenceLag     atomic.Int64 // how late the publisher answers, ns (decaying maximum)

	delay delayMeter // guarded by mu but for its atomics

	packetsIn atomic.Uint64
	bytesIn   atomic.Uint64
	readers   atomic.Int64
	dropped   atomic.Uint64 // packets dropped for any reader, for the log
	bytesOut  atomic.Uint64 // of readers that have left

	layerFields // simulcast layers (layers.go)
}

func newTrack(s *Stream, index int, info TrackInfo, p *pool, params *Params) *Track {
	return &Track{
		info:           info,
		stream:         s,
		index:          index,
		pool:           p,
		hist:           newHistory(params.HistoryPackets),
		maxGOP:         params.GOPCachePackets,
		keyWait:        params.KeyframeWait,
		shards:         make([]atomic.Pointer[[]*Reader], len(p.workers)),
		lost:           make([]*[]*Reader, len(p.workers)),
		keyReqInterval: params.KeyframeInterval,
		keyMax:         params.KeyframeMaxInterval,
		delay:          delayMeter{clock: float64(info.Codec.ClockRate)},
	}
}

// Info describes the track.
func (t *Track) Info() TrackInfo { return t.info }

// newPublisher makes the next packet start a new mapping so that a new
// publisher's numbering continues where the previous one stopped.
func (t *Track) newPublisher(requestKeyframe func()) {
	t.mu.Lock()
	t.remap = true
	t.prevInSeen = false
	t.delay.newPublisher()
	t.mu.Unlock()
	t.layers.newPublisher()
	if requestKeyframe == nil {
		t.keyframe.Store(nil)
	} else {
		t.keyframe.Store(&requestKeyframe)
	}
}

// write takes one packet from the publisher and hands it to the workers.
// It never blocks: a worker that is behind loses the packet for its readers,
// which resume at the next keyframe.
func (t *Track) write(h *rtp.Header, payload []byte) {
	isKey := codec.IsKeyframe(t.info.Codec.MimeType, payload)
	now := time.Now()
	if !isKey && t.keyMax > 0 && t.info.Kind == codec.Video && t.cadenceReaders.Load() > 0 {
		t.keepCadence(now.UnixNano())
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.remap {
		t.remap = false
		if t.haveOut {
			// Continue one sequence number and the elapsed wall time after
			// the last packet, so players see one stream.
			elapsed := now.Sub(t.lastWall)
			ticks := uint32(elapsed.Seconds() * float64(t.info.Codec.ClockRate))
			if ticks == 0 {
				ticks = 1
			}
			t.seqOff = t.lastOut.SequenceNumber + 1 - h.SequenceNumber
			t.tsOff = t.lastOut.Timestamp + ticks - h.Timestamp
		}
		clear(t.gop)
		t.gop, t.gopOK = t.gop[:0], false
		// Readers continue at the new publisher's first keyframe: its other
		// frames reference pictures they never had. The worker learns it
		// with the first packet of the new publisher, not before: packets
		// of the old one may still be queued.
		for i := range t.shards {
			if list := t.shards[i].Load(); list != nil && len(*list) > 0 {
				t.lost[i] = list
			}
		}
	}
	p := &Packet{Payload: payload}
	p.Header = rtp.Header{
		Version:        2,
		Marker:         h.Marker,
		PayloadType:    h.PayloadType,
		SequenceNumber: h.SequenceNumber + t.seqOff,
		Timestamp:      h.Timestamp + t.tsOff,
	}
	if t.hist.get(p.Header.SequenceNumber) != nil {
		// A second packet under a number already forwarded: readers would
		// seal it under an SRTP index they used, and for a viewer whose
		// every packet gets a new transport-cc number that is the same
		// AES-GCM IV over different data. No ingest sends one today
		// (pion's SRTP replay window; RTMP and RTSP number their own).
		return
	}
	inOrder := !t.haveOut || seqNewer(p.Header.SequenceNumber, t.lastOut.SequenceNumber)
	if isKey && inOrder {
		// Only the first packet of a keyframe's access unit starts it.
		p.Keyframe = !t.prevInSeen || h.Timestamp != t.prevInTS || t.info.Kind == codec.Audio
		if p.Keyframe && t.info.Kind == codec.Video {
			t.noteCadenceAnswer(now.UnixNano())
			t.lastKeyframe.Store(now.UnixNano())
		}
	}
	if inOrder {
		t.lastOut, t.lastWall, t.haveOut = p.Header, now, true
		// An H.264 access unit may begin with NAL units that are not part
		// of the keyframe (AUD, SEI): its first keyframe packet starts it.
		if isKey || !strings.EqualFold(t.info.Codec.MimeType, codec.MimeH264) {
			t.prevInTS, t.prevInSeen = h.Timestamp, true
		}
	}
	t.delay.packet(now, h.Timestamp)
	t.packetsIn.Add(1)
	t.bytesIn.Add(uint64(len(payload) + 12))
	t.hist.put(p)
	t.cache(p, inOrder)

	at := sinceEpoch()
	for i := range t.shards {
		list := t.shards[i].Load()
		if list == nil || len(*list) == 0 {
			continue
		}
		if !t.pool.workers[i].offer(job{readers: list, pkt: p, lost: t.lost[i], at: at}) {
			t.lost[i] = list
			for _, r := range *list {
				r.drop()
			}
			t.dropped.Add(uint64(len(*list)))
		} else {
			t.lost[i] = nil
		}
	}
}

// cache keeps the packets since the last video keyframe so that a new reader
// starts with a decodable picture at once instead of waiting up to a GOP.
func (t *Track) cache(p *Packet, inOrder bool) {
	if t.info.Kind != codec.Video || t.maxGOP <= 0 || !inOrder {
		return
	}
	if p.Keyframe {
		clear(t.gop)
		t.gop, t.gopOK, t.gopAt = t.gop[:0], true, time.Now()
	}
	if !t.gopOK {
		return
	}
	if len(t.gop) >= t.maxGOP {
		// A GOP longer than the cache: drop it rather than grow without bound.
		clear(t.gop)
		t.gop, t.gopOK = t.gop[:0], false
		return
	}
	t.gop = append(t.gop, p)
}

// senderReport forwards the publisher's RTCP sender report, translated to
// output timestamps, so that readers can keep audio and video in sync.
func (t *Track) senderReport(ntp uint64, rtpTime uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.delay.senderReport(ntp, rtpTime)
	if t.remap || !t.haveOut {
		return // no mapping for this publisher yet
	}
	sr := &senderReport{ntp: ntp, rtp: rtpTime + t.tsOff}
	for i := range t.shards {
		if list := t.shards[i].Load(); list != nil && len(*list) > 0 {
			t.pool.workers[i].offer(job{readers: list, sr: sr})
		}
	}
}

// RequestKeyframe asks the publisher for a keyframe, at most once per
// interval however many readers ask. A request that falls inside the
// interval is not lost: one deferred request is sent when the interval
// allows, unless a keyframe arrived meanwhile. Otherwise a viewer joining
// just after another would wait for the publisher's next natural keyframe.
func (t *Track) RequestKeyframe() {
	t.keyReqsReceived.Add(1)
	if t.info.Kind != codec.Video || t.keyframe.Load() == nil {
		return // nobody to ask: do not use up the interval
	}
	now := time.Now().UnixNano()
	last := t.lastKeyReq.Load()
	if now-last >= int64(t.keyReqInterval) && t.lastKeyReq.CompareAndSwap(last, now) {
		t.sendKeyframeRequest()
		return
	}
	if !t.keyPending.CompareAndSwap(false, true) {
		return // a deferred request is already scheduled
	}
	asked := now
	time.AfterFunc(time.Duration(last+int64(t.keyReqInterval)-now), func() {
		t.keyPending.Store(false)
		if t.lastKeyframe.Load() > asked {
			return // a keyframe came anyway
		}
		t.lastKeyReq.Store(time.Now().UnixNano())
		t.sendKeyframeRequest()
	})
}

// keepCadence asks for a keyframe when the current GOP is about to reach
// keyMax. It asks early enough that the answer still lands within keyMax:
// a tenth of it (at most 200 ms), or more when this publisher has answered
// later than that (a browser short of CPU takes 300 ms and more), but never
// earlier than three quarters of keyMax. One request per GOP; asked again if
// the publisher has not answered within half the interval (a lost RTCP
// packet). Publishers that cannot be asked (RTMP, RTSP) keep their own GOP.
func (t *Track) keepCadence(now int64) {
	max := int64(t.keyMax)
	lead := min(max/10, int64(200*time.Millisecond))
	if lag := t.cadenceLag.Load(); lag+lag/4 > lead {
		lead = min(lag+lag/4, max/4)
	}
	last := t.lastKeyframe.Load()
	if now-last < max-lead {
		return
	}
	asked := t.cadenceAsk.Load()
	if asked > last && now-asked < max/2 {
		return
	}
	if !t.cadenceAsk.CompareAndSwap(asked, now) {
		return
	}
	t.cadenceAsked.Add(1)
	t.RequestKeyframe()
}

// noteCadenceAnswer measures how long the publisher took to answer an
// outstanding cadence request with the keyframe arriving now. The estimate
// follows a slower answer at once and forgets it over a few GOPs.
func (t *Track) noteCadenceAnswer(now int64) {
	asked := t.cadenceAsk.Load()
	if asked == 0 || asked <= t.lastKeyframe.Load() {
		return // no request outstanding: a natural keyframe
	}
	lag := now - asked
	if lag > int64(t.keyMax) {
		return // not an answer to that request
	}
	prev := t.cadenceLag.Load()
	t.cadenceLag.Store(max(lag, prev-prev/8))
}

func (t *Track) sendKeyframeRequest() {
	if f := t.keyframe.Load(); f != nil {
		t.keyReqsSent.Add(1)
		(*f)()
	}
}

// addReader attaches a sink. A video reader starts on the freshest
// keyframe it can get quickly: the cached GOP if it began less than
// KeyframeWait ago; otherwise a keyframe is requested from the publisher
// and, if none arrives within KeyframeWait, the cached GOP is sent. Starting
// on a fresh keyframe keeps the player at the live edge; the cache bounds
// the wait when the publisher does not answer keyframe requests.
func (t *Track) addReader(sink Sink) *Reader {
	w := t.pool.leastLoaded()
	r := &Reader{track: t, sink: sink, worker: w}
	if bs, ok := sink.(BatchSink); ok {
		r.batch = bs
	}
	if cs, ok := sink.(CadenceSink); ok && cs.KeyframeCadence() {
		r.cadence = true
		t.cadenceReaders.Add(1)
	}
	t.pool.workers[w].readers.Add(1)
	t.readers.Add(1)

	t.mu.Lock()
	old := t.shards[w].Load()
	var list []*Reader
	if old != nil {
		list = make([]*Reader, 0, len(*old)+1)
		list = append(list, *old...)
	}
	list = append(list, r)
	t.shards[w].Store(&list)
	served := false
	if t.keyWait <= 0 || time.Since(t.gopAt) < t.keyWait || startsFromCache(sink) {
		served = t.serveCacheLocked(r)
	}
	t.mu.Unlock()

	if !served && t.info.Kind == codec.Video {
		t.RequestKeyframe()
		if t.keyWait > 0 && t.maxGOP > 0 {
			r.fallback = time.AfterFunc(t.keyWait, func() {
				t.mu.Lock()
				defer t.mu.Unlock()
				if !r.closed.Load() && !r.live.Load() {
					t.serveCacheLocked(r)
				}
			})
		}
	}
	return r
}

// serveCacheLocked queues the cached GOP for r. Caller holds t.mu, which
// orders the burst before any live packet queued after it.
func (t *Track) serveCacheLocked(r *Reader) bool {
	if !t.gopOK || len(t.gop) == 0 {
		return false
	}
	burst := append([]*Packet(nil), t.gop...)
	if !t.pool.workers[r.worker].offer(job{reader: r, burst: burst, lost: t.lost[r.worker]}) {
		return false
	}
	t.lost[r.worker] = nil
	return true
}

func (t *Track) removeReader(r *Reader) {
	if r.fallback != nil {
		r.fallback.Stop()
	}
	t.mu.Lock()
	old := t.shards[r.worker].Load()
	if old != nil {
		list := make([]*Reader, 0, len(*old))
		for _, x := range *old {
			if x != r {
				list = append(list, x)
			}
		}
		t.shards[r.worker].Store(&list)
	}
	t.mu.Unlock()
	if r.cadence {
		t.cadenceReaders.Add(-1)
	}
	t.bytesOut.Add(r.bytesOut.Load())
	t.pool.workers[r.worker].readers.Add(-1)
	t.readers.Add(-1)
}

// TrackStats is a snapshot of a track's counters.
type TrackStats struct {
	TrackInfo
	Readers          int64  `json:"readers"`
	PacketsIn        uint64 `json:"packetsIn"`
	BytesIn          uint64 `json:"bytesIn"`
	BytesOut         uint64 `json:"bytesOut"`
	Dropped          uint64 `json:"dropped"`
	Retransmitted    uint64 `json:"retransmitted"`
	KeyframeRequests uint64 `json:"keyframeRequests"`
	KeyframesAsked   uint64 `json:"keyframesAskedOfPublisher"`
	// CadenceRequests counts the keyframe requests made to bound the GOP
	// for segmenting readers (Params.KeyframeMaxInterval).
	CadenceRequests uint64 `json:"cadenceRequests,omitempty"`
	// Delay is how long after the publisher sent them frames arrive here
	// (nil until the publisher's first sender report).
	Delay *DelayStats `json:"delay,omitempty"`
	// Layers are a simulcast track's layers, lowest first.
	Layers []LayerStats `json:"layers,omitempty"`
}

// byteCounts is what the track took in and sent to its readers, past and
// present.
func (t *Track) byteCounts() (in, out uint64) {
	in, out = t.bytesIn.Load(), t.bytesOut.Load()
	for i := range t.shards {
		if list := t.shards[i].Load(); list != nil {
			for _, r := range *list {
				out += r.bytesOut.Load()
			}
		}
	}
	return in, out
}

func (t *Track) stats() TrackStats {
	st := TrackStats{
		TrackInfo:        t.info,
		Readers:          t.readers.Load(),
		PacketsIn:        t.packetsIn.Load(),
		BytesIn:          t.bytesIn.Load(),
		BytesOut:         t.bytesOut.Load(),
		KeyframeRequests: t.keyReqsReceived.Load(),
		KeyframesAsked:   t.keyReqsSent.Load(),
		CadenceRequests:  t.cadenceAsked.Load(),
	}
	t.mu.Lock()
	ring := t.delay.ring
	t.mu.Unlock()
	st.Delay = t.delay.stats(ring[:])
	st.Layers = t.layerStats()
	for i := range t.shards {
		if list := t.shards[i].Load(); list != nil {
			for _, r := range *list {
				st.BytesOut += r.bytesOut.Load()
				st.Dropped += r.dropped.Load()
				st.Retransmitted += r.resent.Load()
			}
		}
	}
	return st
}
