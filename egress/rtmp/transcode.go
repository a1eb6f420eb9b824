package rtmp

import (
	"errors"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/aac"
)

// ErrNoTranscoder means ffmpeg is missing: Opus cannot become AAC.
var ErrNoTranscoder = errors.New("rtmp: ffmpeg not found: Opus audio cannot be transcoded to AAC; install ffmpeg or push with videoOnly")

// The Opus -> AAC transcoder lives in relay/aac, so that RTMP push and
// HLS share one ffmpeg per stream.
type (
	aacFrame  = aac.Frame
	aacReader = aac.Reader
)

func (m *Manager) acquireAAC(st *relay.Stream, t *relay.Track) (*aacReader, error) {
	r, err := m.aac.Acquire(st, t)
	if errors.Is(err, aac.ErrNoFFmpeg) {
		return nil, ErrNoTranscoder
	}
	return r, err
}

func (m *Manager) releaseAAC(r *aacReader) { r.Close() }
