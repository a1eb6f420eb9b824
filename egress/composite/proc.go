package composite

import "errors"

// ErrNoFFmpeg means ffmpeg is missing: no composite can be made.
var ErrNoFFmpeg = errors.New("composite: ffmpeg not found: room composites need ffmpeg (with libx264 and libopus); install ffmpeg or set --ffmpeg")
