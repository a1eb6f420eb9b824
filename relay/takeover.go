package relay

import (
	"context"
	"time"
)

// Publisher takeover. A publisher killed without a DELETE (a closed laptop,
// a crashed tab) holds its stream until its ICE times out, and its owner's
// new session would get ErrAlreadyLive meanwhile. PublishAs lets the new
// session take the stream over, viewers continuing as after any
// reconnect, when two things hold:
//
//   - the same owner: the new publisher presents the identity the current
//     one presented (the token's identity; "" for every client of an open
//     gateway, which may publish anything anyway). The access policy lets
//     only one identity publish a path (ROOM/IDENTITY and its screen
//     share), so another identity cannot get here; publications made with
//     Publish (relay links, the composite) have no owner and are never
//     taken over this way. WHIP, RTMP and RTSP ingest publish with
//     PublishAs.
//   - silence: the current publisher has sent media, and none for
//     Params.TakeoverAfter (default 1 s). A publisher that is still
//     sending keeps its stream, so a second tab or device of the same
//     identity gets ErrAlreadyLive instead of kicking the live one (and
//     the two cannot take it from each other in turns). One that has not
//     sent anything yet is still starting (its camera, its ICE) and is
//     left alone too: if it died before its first packet, its connect or
//     ICE timeout ends it.

type ownerKey struct{}

// WithOwner records in ctx who publishes (the token identity; "" for an
// open gateway's own clients), for ingests that call PublishAs.
func WithOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerKey{}, owner)
}

// OwnerOf is the owner recorded by WithOwner, "" if none.
func OwnerOf(ctx context.Context) string {
	s, _ := ctx.Value(ownerKey{}).(string)
	return s
}

// DefaultTakeoverAfter is how long a publisher must have been silent
// before its owner's new session may take its stream over.
const DefaultTakeoverAfter = time.Second

// PublishAs is Publish for a publisher that owner (see WithOwner)
// authenticated as: if the stream's current publisher has the same owner
// and has been silent for Params.TakeoverAfter, the new one takes over
// (the old publication is superseded) instead of ErrAlreadyLive.
func (h *Hub) PublishAs(owner, path string, tracks []TrackInfo, src Source) (*Publication, error) {
	return h.publish(path, tracks, src, &owner)
}

// BusyFor is Busy for a new publisher that owner authenticated as: false
// also when it could take the stream over now (see PublishAs), so that an
// ingest can refuse early exactly the publishers PublishAs would refuse.
func (s *Stream) BusyFor(owner string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub == nil || s.pub.stalled.Load() {
		return false
	}
	_, ok := s.hub.mayTakeOver(s.pub, &owner)
	return !ok
}

// mayTakeOver reports whether a publisher of owner may take p's stream
// over now. Caller holds the stream's mu.
func (h *Hub) mayTakeOver(p *Publication, owner *string) (silent time.Duration, ok bool) {
	if owner == nil || p.owner == nil || *p.owner != *owner || h.params.TakeoverAfter <= 0 {
		return 0, false
	}
	last := p.lastIn.Load()
	if last == 0 {
		return 0, false // has not sent anything yet
	}
	silent = time.Since(p.start) - time.Duration(last)
	return silent, silent >= h.params.TakeoverAfter
}

// noteIn records that a packet came in: its time since the publication's
// start, at least 1 (0 means none yet).
func (p *Publication) noteIn() { p.lastIn.Store(max(int64(time.Since(p.start)), 1)) }
