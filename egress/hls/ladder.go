package hls

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/livegate/livegate/relay"
)

// The ABR ladder of a simulcast stream. The stream's muxer carries the top
// layer, as for any stream. Each other layer of its video track gets a
// muxer of its own, started when a player first asks for it, reading the
// layer's relay track as published (no transcoding), with the stream's
// audio. Its files are the stream's directory's too, prefixed with
// "r.RID." (rids are letters, digits, - and _, RFC 8851). The stream's
// multivariant playlist (index.m3u8) lists every layer as a variant, top
// first (players start there and adapt), each with its own audio group so
// that a player's audio and video always come from one muxer.

const layerPrefix = "r."

// layerFile splits a layer rendition's file name "r.RID.FILE".
func layerFile(file string) (rid, inner string, ok bool) {
	rest, ok := strings.CutPrefix(file, layerPrefix)
	if !ok {
		return "", "", false
	}
	rid, inner, ok = strings.Cut(rest, ".")
	if !ok || rid == "" || inner == "" {
		return "", "", false
	}
	return rid, inner, true
}

// ladderLayers returns the layers of the stream's video track other than
// the top one, highest first, that can be renditions: sending, with a
// known picture size.
func ladderLayers(video *relay.Track) ([]*relay.Track, []relay.LayerInfo) {
	tracks, infos := video.Layers()
	var ts []*relay.Track
	var is []relay.LayerInfo
	for i := len(tracks) - 1; i >= 0; i-- {
		in := infos[i]
		if in.Top || !in.Active || in.Width == 0 || in.Height == 0 {
			continue
		}
		ts, is = append(ts, tracks[i]), append(is, in)
	}
	return ts, is
}

// getLayer returns the running muxer of one layer of path's video, or
// starts one.
func (s *Server) getLayer(path, rid string) (*muxer, error) {
	top, err := s.get(path)
	if err != nil {
		return nil, err
	}
	key := path + "@" + rid
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if m := s.muxers[key]; m != nil {
		return m, nil
	}
	tracks, _ := top.video.Layers()
	var video *relay.Track
	for _, t := range tracks {
		if t.RID() == rid {
			video = t
		}
	}
	if video == nil {
		return nil, errNotFound{layerPrefix + rid}
	}
	m := newMuxer(s, key, top.st, video, top.audio)
	m.top = top
	s.muxers[key] = m
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		m.run()
	}()
	s.log.Info("hls: layer muxer started", "stream", path, "rid", rid)
	return m, nil
}

// prefixURIs makes a layer muxer's playlist name its files under the
// layer's prefix: every URI line and URI="..." attribute.
func prefixURIs(pl []byte, prefix string) []byte {
	lines := strings.Split(strings.TrimRight(string(pl), "\n"), "\n")
	var b strings.Builder
	b.Grow(len(pl) + 16*len(lines))
	for _, l := range lines {
		switch {
		case l == "":
		case !strings.HasPrefix(l, "#"):
			l = prefix + l
		default:
			l = strings.ReplaceAll(l, `URI="`, `URI="`+prefix)
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// ladder adds the lower layers of a simulcast stream to the top muxer's
// multivariant playlist: for each, the top's audio renditions and variant
// again, with the layer's group names, picture size and bitrate, and its
// files' prefix. A stream without layers keeps its playlist.
func ladder(pl []byte, video *relay.Track) []byte {
	_, infos := ladderLayers(video)
	if len(infos) == 0 {
		return pl
	}
	lines := strings.Split(strings.TrimRight(string(pl), "\n"), "\n")
	var media []string   // EXT-X-MEDIA lines
	var variant []string // EXT-X-STREAM-INF and its URI
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA:"):
			media = append(media, l)
		case strings.HasPrefix(l, "#EXT-X-STREAM-INF:") && i+1 < len(lines) && variant == nil:
			variant = []string{l, lines[i+1]}
		}
	}
	if variant == nil {
		return pl
	}
	out := append([]string(nil), lines...)
	for _, in := range infos {
		prefix := layerPrefix + in.RID + "."
		for _, l := range media {
			l = renameGroup(l, "GROUP-ID", in.RID)
			out = append(out, strings.ReplaceAll(l, `URI="`, `URI="`+prefix))
		}
		inf := renameGroup(variant[0], "AUDIO", in.RID)
		inf = setAttr(inf, "RESOLUTION", fmt.Sprintf("%dx%d", in.Width, in.Height))
		// The measured payload bitrate, with room for packaging and audio.
		bw := in.Bitrate + in.Bitrate/10 + 64000
		inf = setAttr(inf, "BANDWIDTH", strconv.Itoa(bw))
		inf = setAttr(inf, "AVERAGE-BANDWIDTH", strconv.Itoa(bw))
		out = append(out, inf, prefix+variant[1])
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// attrValue finds attribute name's value in a tag line: its start and end
// offsets (the quotes included), or -1.
func attrValue(line, name string) (int, int) {
	for _, sep := range []string{":", ","} {
		i := strings.Index(line, sep+name+"=")
		if i < 0 {
			continue
		}
		start := i + len(sep) + len(name) + 1
		end := start
		if end < len(line) && line[end] == '"' {
			if j := strings.IndexByte(line[end+1:], '"'); j >= 0 {
				end += j + 2
			} else {
				end = len(line)
			}
		} else if j := strings.IndexByte(line[end:], ','); j >= 0 {
			end += j
		} else {
			end = len(line)
		}
		return start, end
	}
	return -1, -1
}

// setAttr sets (or adds) an unquoted attribute of a tag line.
func setAttr(line, name, value string) string {
	start, end := attrValue(line, name)
	if start < 0 {
		return line + "," + name + "=" + value
	}
	return line[:start] + value + line[end:]
}

// renameGroup appends "-rid" to a quoted group attribute (GROUP-ID, AUDIO).
func renameGroup(line, name, rid string) string {
	start, end := attrValue(line, name)
	if start < 0 || end-start < 2 || line[start] != '"' {
		return line
	}
	return line[:end-1] + "-" + rid + line[end-1:]
}

// warmLayers starts the muxers of path's lower layers (when a player reads
// the multivariant playlist) and keeps them from idling out while players
// read the top one: a player that switches renditions then finds playlists
// with segments at once, instead of waiting for a muxer to start and fill.
func (s *Server) warmLayers(path string, top *muxer) {
	tracks, _ := ladderLayers(top.video)
	now := time.Now().UnixNano()
	for _, t := range tracks {
		key := path + "@" + t.RID()
		s.mu.Lock()
		m := s.muxers[key]
		s.mu.Unlock()
		if m != nil {
			m.lastReq.Store(now)
			continue
		}
		if _, err := s.getLayer(path, t.RID()); err != nil {
			s.log.Debug("hls: layer muxer", "stream", path, "rid", t.RID(), "err", err)
		}
	}
}
