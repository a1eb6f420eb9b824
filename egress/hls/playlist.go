package hls

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
)

// pruneMargin is how many segments before a playlist's window the
// parameter history is kept.
const pruneMargin = 16

// mediaRewrite is what a media playlist from gohlslib is rewritten with.
type mediaRewrite struct {
	vs *versions
	// initURI is the EXT-X-MAP URI of parameter version n; nil keeps the
	// muxer's own init section (audio, whose parameters never change).
	initURI func(n int) string
	// pin turns the muxer's target duration and the durations of the
	// parts in the playlist (but the last of each segment, which ends at a
	// keyframe) into the part target and target duration every playlist
	// of the stream announces.
	pin func(parts []time.Duration, target int) (time.Duration, int)
	// outOfStep is told when a segment does not start where the writer
	// expected: the init sections named may then be wrong.
	outOfStep func(seg uint64, want, got time.Time)
}

// rewrite adds the parameter changes (EXT-X-DISCONTINUITY, EXT-X-MAP and
// EXT-X-DISCONTINUITY-SEQUENCE) and steady part and segment targets to a
// gohlslib media playlist. Players must never see PART-TARGET change (iOS
// fails) and gohlslib derives it from the longest part in the window, which
// varies with the publisher's frame timing: a value is chosen once from the
// first playlist's parts and kept.
func (mr mediaRewrite) rewrite(pl []byte) []byte {
	target := 0
	var parts []time.Duration
	lines := strings.Split(strings.TrimRight(string(pl), "\n"), "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			target, _ = strconv.Atoi(strings.TrimPrefix(l, "#EXT-X-TARGETDURATION:"))
		case strings.HasPrefix(l, "#EXT-X-PART:DURATION="):
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#EXT-X-PART:") {
				v, _, _ := strings.Cut(strings.TrimPrefix(l, "#EXT-X-PART:DURATION="), ",")
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					parts = append(parts, time.Duration(math.Round(f*1000))*time.Millisecond)
				}
			}
		}
	}
	partTarget, target := mr.pin(parts, target)

	var out bytes.Buffer
	out.Grow(len(pl) + 256)
	var seg, first uint64
	inSeg := false
	line := func(s ...string) {
		for _, x := range s {
			out.WriteString(x)
		}
		out.WriteByte('\n')
	}
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			line("#EXT-X-TARGETDURATION:", strconv.Itoa(target))
		case strings.HasPrefix(l, "#EXT-X-SERVER-CONTROL:"):
			// No delta updates (CAN-SKIP-UNTIL): a skipped range could hide
			// a discontinuity, and full playlists of a few segments are small.
			line("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=", seconds(3*partTarget))
		case strings.HasPrefix(l, "#EXT-X-PART-INF:"):
			line("#EXT-X-PART-INF:PART-TARGET=", seconds(partTarget))
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			n, _ := strconv.ParseUint(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			first, seg = n, n
			// Requests render gohlslib's playlist before they take the
			// lock that rewrites it, so a slightly older window may
			// follow a newer one: keep some history.
			mr.vs.prune(first - min(first, pruneMargin))
			line(l)
			if d := mr.vs.before(first); d > 0 {
				line("#EXT-X-DISCONTINUITY-SEQUENCE:", strconv.Itoa(d))
			}
		case strings.HasPrefix(l, "#EXT-X-MAP:"):
			if mr.initURI != nil {
				line(`#EXT-X-MAP:URI="`, mr.initURI(mr.vs.of(first)), `"`)
			} else {
				line(l)
			}
		case strings.HasPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"), strings.HasPrefix(l, "#EXT-X-PART:"),
			strings.HasPrefix(l, "#EXT-X-GAP"), strings.HasPrefix(l, "#EXTINF:"):
			if !inSeg {
				inSeg = true
				if v, ok := strings.CutPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"); ok && mr.outOfStep != nil {
					got, err := time.Parse(time.RFC3339Nano, v)
					if want, known := mr.vs.startOf(seg); err == nil && known && got.Sub(want).Abs() > 2*time.Millisecond {
						mr.outOfStep(seg, want, got)
					}
				}
				if mr.vs.startsAt(seg) {
					line("#EXT-X-DISCONTINUITY")
					if mr.initURI != nil && seg != first {
						line(`#EXT-X-MAP:URI="`, mr.initURI(mr.vs.of(seg)), `"`)
					}
					// A segment after a discontinuity should say when it
					// starts; gohlslib dates only the last two.
					if at, ok := mr.vs.startOf(seg); ok && !strings.HasPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:") {
						line("#EXT-X-PROGRAM-DATE-TIME:", at.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
					}
				}
			}
			line(l)
		case l != "" && !strings.HasPrefix(l, "#"):
			line(l)
			inSeg = false
			seg++
		default:
			line(l)
		}
	}
	return out.Bytes()
}

// seconds formats d as HLS does (seconds with up to 5 decimals).
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
