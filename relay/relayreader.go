package relay

import "context"

// CacheStartSink is a Sink that starts on the cached GOP at once instead of
// waiting up to Params.KeyframeWait for a fresh keyframe: a relay link with
// which a child node replaces one that broke. The child's viewers are
// mid-stream, and any keyframe now is worth more to them than a fresher one
// later, which a publisher that ignores keyframe requests only sends at its
// next GOP. (A child's first pull waits for a fresh keyframe like any
// viewer, so that its first viewers start at the live edge.)
type CacheStartSink interface {
	Sink
	StartFromCache() bool
}

type relayReaderKey struct{}

// RelayResumeHeader, with any value, on a relay link's WHEP offer says that
// the child replaces a broken link (see CacheStartSink).
const RelayResumeHeader = "Livegate-Relay-Resume"

// WithRelayReader marks ctx as the request of a relay link resuming a
// stream (a child node replacing a broken link), for readers created from it.
func WithRelayReader(ctx context.Context) context.Context {
	return context.WithValue(ctx, relayReaderKey{}, true)
}

// IsRelayReader reports whether ctx was marked by WithRelayReader.
func IsRelayReader(ctx context.Context) bool {
	v, _ := ctx.Value(relayReaderKey{}).(bool)
	return v
}

func startsFromCache(s Sink) bool {
	cs, ok := s.(CacheStartSink)
	return ok && cs.StartFromCache()
}
