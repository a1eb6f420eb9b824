package composite

import (
	"fmt"
	"math"
	"strings"
)

// Layout names how hosts are arranged on the canvas.
type Layout string

// Layouts.
const (
	// Grid puts up to MaxTiles hosts in equal tiles, each picture scaled
	// with its aspect ratio kept.
	Grid Layout = "grid"
	// Speaker shows one host large (a screen share if the room has one,
	// else the chosen speaker, else the first host) and the others small
	// in a row below.
	Speaker Layout = "speaker"
)

// MaxTiles bounds the pictures on the canvas; every host is heard.
const MaxTiles = 9

// ScreenSuffix marks a screen share stream (ROOM/alice-screen), as the
// rooms do.
const ScreenSuffix = "-screen"

// Rect is a tile on the canvas, in pixels (even numbers).
type Rect struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

func (r Rect) empty() bool { return r.W <= 0 || r.H <= 0 }

// ParseLayout checks a layout name ("" is grid).
func ParseLayout(s string) (Layout, error) {
	switch Layout(strings.ToLower(s)) {
	case "", Grid:
		return Grid, nil
	case Speaker:
		return Speaker, nil
	}
	return "", fmt.Errorf("layout %q: want grid or speaker", s)
}

func even(v int) int { return v &^ 1 }

// arrange places hosts (in join order) on a w x h canvas. The result has
// one rect per host; hosts beyond MaxTiles get an empty rect (heard, not
// seen).
func arrange(l Layout, hosts []string, speaker string, w, h int) []Rect {
	out := make([]Rect, len(hosts))
	n := min(len(hosts), MaxTiles)
	if n == 0 {
		return out
	}
	if l == Speaker && n > 1 {
		big := pickSpeaker(hosts[:n], speaker)
		sh := even(h / 4)
		out[big] = Rect{0, 0, even(w), even(h - sh)}
		small := n - 1
		sw := even(w / max(4, small))
		x := even((w - sw*small) / 2)
		for i := 0; i < n; i++ {
			if i == big {
				continue
			}
			out[i] = Rect{x, even(h - sh), sw, sh}
			x += sw
		}
		return out
	}
	cols := int(math.Ceil(math.Sqrt(float64(n))))
	rows := (n + cols - 1) / cols
	tw, th := even(w/cols), even(h/rows)
	for i := 0; i < n; i++ {
		row, col := i/cols, i%cols
		inRow := cols
		if row == rows-1 {
			inRow = n - row*cols
		}
		// A short last row is centred.
		x0 := even((w - inRow*tw) / 2)
		out[i] = Rect{x0 + col*tw, row * th, tw, th}
	}
	return out
}

// pickSpeaker is the index of the large tile: the first screen share,
// else the chosen speaker (by stream name or identity), else the first.
func pickSpeaker(hosts []string, speaker string) int {
	for i, h := range hosts {
		if strings.HasSuffix(h, ScreenSuffix) {
			return i
		}
	}
	if speaker != "" {
		for i, h := range hosts {
			if h == speaker {
				return i
			}
		}
	}
	return 0
}
