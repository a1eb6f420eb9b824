package composite

import "strings"

// canvas is one I420 picture (Y plane, then U, then V).
type canvas struct {
	w, h int
	buf  []byte
}

func newCanvas(w, h int) *canvas { return &canvas{w: w, h: h, buf: make([]byte, frameSize(w, h))} }

func frameSize(w, h int) int { return w*h + 2*(w/2)*(h/2) }

func (c *canvas) planes() (y, u, v []byte) {
	n := c.w * c.h
	q := (c.w / 2) * (c.h / 2)
	return c.buf[:n], c.buf[n : n+q], c.buf[n+q : n+2*q]
}

// fill paints r in one colour.
func (c *canvas) fill(r Rect, yv, uv, vv byte) {
	r = c.clip(r)
	if r.empty() {
		return
	}
	y, u, v := c.planes()
	for row := r.Y; row < r.Y+r.H; row++ {
		line := y[row*c.w+r.X : row*c.w+r.X+r.W]
		for i := range line {
			line[i] = yv
		}
	}
	cw := c.w / 2
	for row := r.Y / 2; row < (r.Y+r.H)/2; row++ {
		lu := u[row*cw+r.X/2 : row*cw+(r.X+r.W)/2]
		lv := v[row*cw+r.X/2 : row*cw+(r.X+r.W)/2]
		for i := range lu {
			lu[i], lv[i] = uv, vv
		}
	}
}

func (c *canvas) clip(r Rect) Rect {
	if r.X < 0 {
		r.W += r.X
		r.X = 0
	}
	if r.Y < 0 {
		r.H += r.Y
		r.Y = 0
	}
	r.W = min(r.W, c.w-r.X)
	r.H = min(r.H, c.h-r.Y)
	r.X, r.Y, r.W, r.H = even(r.X), even(r.Y), even(r.W), even(r.H)
	return r
}

// blit draws the I420 picture src (sw x sh) into r, scaling it with the
// nearest pixel when the sizes differ (only while a decoder for the new
// tile size starts).
func (c *canvas) blit(r Rect, src []byte, sw, sh int) {
	if r.empty() || sw <= 0 || sh <= 0 || len(src) < frameSize(sw, sh) {
		return
	}
	if r.X+r.W > c.w || r.Y+r.H > c.h {
		return
	}
	y, u, v := c.planes()
	sy := src[:sw*sh]
	sq := (sw / 2) * (sh / 2)
	su, sv := src[sw*sh:sw*sh+sq], src[sw*sh+sq:sw*sh+2*sq]
	if sw == r.W && sh == r.H {
		for row := 0; row < sh; row++ {
			copy(y[(r.Y+row)*c.w+r.X:], sy[row*sw:(row+1)*sw])
		}
		cw, scw := c.w/2, sw/2
		for row := 0; row < sh/2; row++ {
			copy(u[(r.Y/2+row)*cw+r.X/2:], su[row*scw:(row+1)*scw])
			copy(v[(r.Y/2+row)*cw+r.X/2:], sv[row*scw:(row+1)*scw])
		}
		return
	}
	scale := func(dst []byte, dstride, dx, dy, dw, dh int, s []byte, sstride, w, h int) {
		for row := 0; row < dh; row++ {
			srow := s[(row*h/dh)*sstride:]
			line := dst[(dy+row)*dstride+dx : (dy+row)*dstride+dx+dw]
			for i := range line {
				line[i] = srow[i*w/dw]
			}
		}
	}
	scale(y, c.w, r.X, r.Y, r.W, r.H, sy, sw, sw, sh)
	scale(u, c.w/2, r.X/2, r.Y/2, r.W/2, r.H/2, su, sw/2, sw/2, sh/2)
	scale(v, c.w/2, r.X/2, r.Y/2, r.W/2, r.H/2, sv, sw/2, sw/2, sh/2)
}

// placeholder is the tile of a host without a picture (no camera, or its
// decoder not started yet): grey with a head-and-shoulders outline.
func (c *canvas) placeholder(r Rect) {
	r = c.clip(r)
	if r.empty() {
		return
	}
	c.fill(r, 60, 128, 128)
	y, _, _ := c.planes()
	cx, cy := r.X+r.W/2, r.Y+r.H*2/5
	rad := min(r.W, r.H) / 7
	for row := r.Y; row < r.Y+r.H; row++ {
		for col := r.X; col < r.X+r.W; col++ {
			dx, dy := col-cx, row-cy
			head := dx*dx+dy*dy <= rad*rad
			// Shoulders: the upper half of a wider ellipse below the head.
			sy := row - (cy + rad*3)
			body := sy < 0 && sy > -rad*2 && dx*dx*4+sy*sy*9 <= rad*rad*4*4
			if head || body {
				y[row*c.w+col] = 150
			}
		}
	}
}

// caption writes name in the tile's lower left corner, white on a dark
// box, in a 5x7 pixel font scaled to the tile.
func (c *canvas) caption(r Rect, name string) {
	r = c.clip(r)
	if r.empty() || name == "" {
		return
	}
	name = strings.ToUpper(name)
	scale := max(1, r.H/180)
	gw, gh := 6*scale, 9*scale
	maxChars := (r.W - 4*scale) / gw
	if maxChars <= 0 || gh+4*scale > r.H {
		return
	}
	if len(name) > maxChars {
		name = name[:maxChars]
	}
	box := Rect{r.X + 2*scale, r.Y + r.H - gh - 4*scale, len(name)*gw + 2*scale, gh + 2*scale}
	c.fill(c.clip(box), 16, 128, 128)
	y, _, _ := c.planes()
	ox, oy := box.X+2*scale, box.Y+2*scale
	for i := 0; i < len(name); i++ {
		g, ok := font5x7[name[i]]
		if !ok {
			continue
		}
		for gy := 0; gy < 7; gy++ {
			for gx := 0; gx < 5; gx++ {
				if g[gy]&(0x10>>gx) == 0 {
					continue
				}
				for sy := 0; sy < scale; sy++ {
					row := oy + gy*scale + sy
					if row >= c.h {
						continue
					}
					for sx := 0; sx < scale; sx++ {
						col := ox + i*gw + gx*scale + sx
						if col < c.w {
							y[row*c.w+col] = 235
						}
					}
				}
			}
		}
	}
}

// font5x7 has the characters of stream names (A-Z, 0-9, _ and -); lower
// case is shown upper case. Each row is 5 bits, the leftmost pixel 0x10.
var font5x7 = map[byte][7]byte{
	'A': {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, 'B': {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e},
	'C': {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}, 'D': {0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e},
	'E': {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}, 'F': {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10},
	'G': {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}, 'H': {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11},
	'I': {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, 'J': {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c},
	'K': {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, 'L': {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f},
	'M': {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}, 'N': {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},
	'O': {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, 'P': {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10},
	'Q': {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}, 'R': {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11},
	'S': {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}, 'T': {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},
	'U': {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, 'V': {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04},
	'W': {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}, 'X': {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11},
	'Y': {0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04}, 'Z': {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f},
	'0': {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}, '1': {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e},
	'2': {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}, '3': {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e},
	'4': {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}, '5': {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e},
	'6': {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}, '7': {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
	'8': {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}, '9': {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c},
	'_': {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}, '-': {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00},
}
