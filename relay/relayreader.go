package relay

import "context"

// CacheStartSink is a Sink that starts on the cached GOP at once instead of
// waiting up to Params.KeyframeWait for a fresh keyframe: a relay link to a
// child node. The child's viewers are mid-stream (the link may be replacing
// one whose parent died), and any keyframe now is worth more to them than
// a fresher one later, which a publisher that ignores keyframe requests
// only sends at its next GOP.
type CacheStartSink interface {
	Sink
	StartFromCache() bool
}

type relayReaderKey struct{}

// WithRelayReader marks ctx as the request of a relay link (a child node
// pulling the stream), for readers created from it.
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
