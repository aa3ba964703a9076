package demodata

import (
	"math"
)

const (
	modeBlend = iota // move towards col
	modeMul          // move towards pixel*col (col is a per-channel factor)
)

// ellipse blends a soft-edged rotated ellipse into the image.
func (c *canvas) ellipse(cx, cy, rx, ry, ang float64, col rgb, alpha, soft float64, mode int) {
	rx, ry = math.Max(rx, 0.7), math.Max(ry, 0.7)
	soft = math.Max(soft, 1.2/math.Min(rx, ry))
	if soft > 1 {
		soft = 1
	}
	rm := math.Max(rx, ry) + 1
	x0, y0, x1, y1 := c.bbox(cx, cy, rm, rm)
	ca, sa := math.Cos(ang), math.Sin(ang)
	inner2 := (1 - soft) * (1 - soft)
	pix, stride := c.img.Pix, c.img.Stride
	for y := y0; y < y1; y++ {
		dy := float64(y) + 0.5 - cy
		for x := x0; x < x1; x++ {
			dx := float64(x) + 0.5 - cx
			u := (dx*ca + dy*sa) / rx
			v := (-dx*sa + dy*ca) / ry
			q2 := u*u + v*v
			if q2 >= 1 {
				continue
			}
			a := alpha
			if q2 > inner2 {
				t := (1 - math.Sqrt(q2)) / soft
				a *= t * t * (3 - 2*t)
			}
			blendPix(pix[y*stride+x*4:], col, a, mode)
		}
	}
}

func blendPix(p []uint8, col rgb, a float64, mode int) {
	r, g, b := float64(p[0]), float64(p[1]), float64(p[2])
	if r+g+b == 0 {
		return // outside the retina
	}
	tr, tg, tb := col.r, col.g, col.b
	if mode == modeMul {
		tr, tg, tb = r*col.r, g*col.g, b*col.b
	}
	p[0] = clamp8(r + (tr-r)*a)
	p[1] = clamp8(g + (tg-g)*a)
	p[2] = clamp8(b + (tb-b)*a)
}

// ring blends an annulus of radius rad and half-thickness hw.
func (c *canvas) ring(cx, cy, rad, hw float64, col rgb, alpha float64, mode int) {
	hw = math.Max(hw, 0.7)
	x0, y0, x1, y1 := c.bbox(cx, cy, rad+hw+1, rad+hw+1)
	pix, stride := c.img.Pix, c.img.Stride
	for y := y0; y < y1; y++ {
		dy := float64(y) + 0.5 - cy
		for x := x0; x < x1; x++ {
			dx := float64(x) + 0.5 - cx
			d := math.Abs(math.Sqrt(dx*dx+dy*dy) - rad)
			if d >= hw {
				continue
			}
			t := 1 - d/hw
			blendPix(pix[y*stride+x*4:], col, alpha*t*t*(3-2*t), mode)
		}
	}
}

// line blends a round-capped thick line (used for pigment spicules).
func (c *canvas) line(x0, y0, x1, y1, hw float64, col rgb, alpha float64) {
	hw = math.Max(hw, 0.6)
	bx0, by0, bx1, by1 := c.bbox((x0+x1)/2, (y0+y1)/2, math.Abs(x1-x0)/2+hw+1, math.Abs(y1-y0)/2+hw+1)
	dx, dy := x1-x0, y1-y0
	l2 := dx*dx + dy*dy
	inv := 0.0
	if l2 > 0 {
		inv = 1 / l2
	}
	pix, stride := c.img.Pix, c.img.Stride
	for y := by0; y < by1; y++ {
		py := float64(y) + 0.5 - y0
		for x := bx0; x < bx1; x++ {
			px := float64(x) + 0.5 - x0
			t := clamp01((px*dx + py*dy) * inv)
			ex, ey := px-t*dx, py-t*dy
			d := math.Sqrt(ex*ex + ey*ey)
			cov := clamp01(hw + 0.5 - d)
			if cov <= 0 {
				continue
			}
			blendPix(pix[y*stride+x*4:], col, alpha*cov, modeBlend)
		}
	}
}

// blob draws an irregular lesion as a cluster of overlapping ellipses.
func (s *scene) blob(c *canvas, cx, cy, rad float64, col rgb, alpha, soft float64, mode, parts int) {
	r := s.rng
	for i := 0; i < parts; i++ {
		ox := r.NormFloat64() * rad * 0.3
		oy := r.NormFloat64() * rad * 0.3
		k := uniform(r, 0.55, 0.95)
		c.ellipse(cx+ox, cy+oy, rad*k, rad*k*uniform(r, 0.6, 1), uniform(r, 0, math.Pi), col, alpha, soft, mode)
	}
}

// pointNear returns a random point around (x, y) with a Gaussian spread,
// kept inside the retina (at most 0.93 R from the centre).
func (s *scene) pointNear(x, y, sigma float64) (float64, float64) {
	r := s.rng
	for range 20 {
		px := x + r.NormFloat64()*sigma
		py := y + r.NormFloat64()*sigma
		if math.Hypot(px-s.cx, py-s.cy) < 0.93*s.R {
			return px, py
		}
	}
	return x, y
}

// pointInAnnulus returns a uniformly random point at radius [r0, r1]·R
// around the retina centre.
func (s *scene) pointInAnnulus(r0, r1 float64) (float64, float64) {
	r := s.rng
	rad := s.R * math.Sqrt(uniform(r, r0*r0, r1*r1))
	a := uniform(r, 0, 2*math.Pi)
	return s.cx + rad*math.Cos(a), s.cy + rad*math.Sin(a)
}

func (s *scene) discDist(x, y float64) float64 {
	return math.Hypot((x-s.discX)/s.discRX, (y-s.discY)/s.discRY)
}

var (
	haemF    = rgb{0.62, 0.28, 0.30} // haemorrhage: multiplicative darkening
	flameF   = rgb{0.68, 0.32, 0.32}
	exudate  = rgb{250, 228, 105}
	drusen   = rgb{238, 205, 118}
	cottonWl = rgb{238, 226, 205}
	pigment  = rgb{28, 17, 12}
)

// deepLesions draws signs that lie beneath the retinal vessels.
func (s *scene) deepLesions(c *canvas) {
	r, R := s.rng, s.R
	br := math.Min(s.bright, 1.05)
	switch s.class {
	case "diabetic_retinopathy":
		// Hard exudates: clusters of sharp yellow spots in the posterior pole.
		for range 2 + r.IntN(4) {
			ccx, ccy := s.pointNear(s.fovX+s.dir*0.05*R, s.fovY, 0.22*R)
			if s.discDist(ccx, ccy) < 1.6 {
				continue
			}
			for range 6 + r.IntN(16) {
				x, y := s.pointNear(ccx, ccy, 0.045*R)
				rad := uniform(r, 0.005, 0.014) * R
				s.blob(c, x, y, rad, exudate.scale(br), 0.95, 0.3, modeBlend, 2)
			}
		}
	case "amd":
		// Drusen: soft yellow dots clustered around the macula.
		n := 40 + r.IntN(90)
		for range n {
			x, y := s.pointNear(s.fovX, s.fovY, 0.12*R)
			rad := uniform(r, 0.005, 0.017) * R
			c.ellipse(x, y, rad, rad*uniform(r, 0.8, 1), 0, drusen.scale(br), uniform(r, 0.7, 0.95), 0.7, modeBlend)
		}
		for range r.IntN(6) {
			x, y := s.pointNear(s.fovX, s.fovY, 0.08*R)
			c.ellipse(x, y, 0.008*R, 0.006*R, uniform(r, 0, 3), pigment, 0.6, 0.6, modeBlend)
		}
	case "retinitis_pigmentosa":
		// Bone-spicule pigment in the mid-periphery.
		n := 70 + r.IntN(110)
		for range n {
			x, y := s.pointInAnnulus(0.45, 0.93)
			arms := 3 + r.IntN(3)
			a0 := uniform(r, 0, 2*math.Pi)
			for k := range arms {
				a := a0 + float64(k)*2*math.Pi/float64(arms) + r.NormFloat64()*0.4
				l := uniform(r, 0.012, 0.035) * R
				c.line(x, y, x+l*math.Cos(a), y+l*math.Sin(a), uniform(r, 0.0025, 0.005)*R, pigment, 0.9)
			}
		}
	case "central_serous_chorioretinopathy":
		// Round serous blister near the macula: dull, slightly elevated
		// disc with a light reflex ring at its margin.
		x, y := s.pointNear(s.fovX, s.fovY, 0.04*R)
		rad := uniform(r, 0.10, 0.16) * R
		c.ellipse(x, y, rad, rad*uniform(r, 0.9, 1), uniform(r, 0, 3), rgb{1.08, 1.22, 1.25}, 0.75, 0.15, modeMul)
		c.ring(x, y, rad, 0.012*R, rgb{255, 214, 170}.scale(br), 0.45, modeBlend)
		c.ellipse(x+uniform(r, -0.4, 0.4)*rad, y+uniform(r, -0.4, 0.4)*rad, 0.008*R, 0.008*R, 0, rgb{250, 225, 150}, 0.7, 0.6, modeBlend)
	case "macular_hole":
		// Dark round full-thickness hole at the fovea with a grey cuff and
		// yellow deposits at its base.
		rad := uniform(r, 0.035, 0.05) * R
		c.ring(s.fovX, s.fovY, rad*1.45, rad*0.55, rgb{190, 160, 140}.scale(br), 0.45, modeBlend)
		c.ellipse(s.fovX, s.fovY, rad, rad, 0, rgb{88, 18, 12}, 0.95, 0.12, modeBlend)
		for range 3 + r.IntN(5) {
			x, y := s.pointNear(s.fovX, s.fovY, rad*0.35)
			c.ellipse(x, y, rad*0.1, rad*0.1, 0, rgb{220, 190, 110}, 0.8, 0.5, modeBlend)
		}
	case "chorioretinitis":
		// Pale atrophic chorioretinal scars with pigmented borders.
		for range 2 + r.IntN(6) {
			x, y := s.pointInAnnulus(0.1, 0.85)
			if s.discDist(x, y) < 2 {
				continue
			}
			rad := uniform(r, 0.045, 0.1) * R
			s.blob(c, x, y, rad, rgb{232, 212, 172}.scale(br), 0.7, 0.5, modeBlend, 5)
			for range 6 + r.IntN(12) {
				a := uniform(r, 0, 2*math.Pi)
				d := rad * uniform(r, 0.6, 1.05)
				c.ellipse(x+d*math.Cos(a), y+d*math.Sin(a), uniform(r, 0.004, 0.012)*R, uniform(r, 0.003, 0.009)*R, a, pigment, 0.85, 0.5, modeBlend)
			}
		}
	}
}

// flame draws a flame-shaped (nerve fibre layer) haemorrhage oriented
// radially from the disc.
func (s *scene) flame(c *canvas, x, y, size float64) {
	a := math.Atan2(y-s.discY, x-s.discX)
	c.ellipse(x, y, size, size*uniform(s.rng, 0.22, 0.35), a+s.rng.NormFloat64()*0.15, flameF, 0.9, 0.65, modeMul)
}

// surfaceLesions draws signs that lie over the vessels.
func (s *scene) surfaceLesions(c *canvas) {
	r, R := s.rng, s.R
	switch s.class {
	case "diabetic_retinopathy":
		// Microaneurysms and dot/blot haemorrhages.
		for range 15 + r.IntN(40) {
			x, y := s.pointNear(s.fovX+s.dir*0.1*R, s.fovY, 0.35*R)
			rad := uniform(r, 0.004, 0.011) * R
			c.ellipse(x, y, rad, rad, 0, haemF, 0.95, 0.35, modeMul)
		}
		for range 3 + r.IntN(8) {
			x, y := s.pointNear(s.fovX+s.dir*0.1*R, s.fovY, 0.4*R)
			s.blob(c, x, y, uniform(r, 0.014, 0.03)*R, haemF, 0.85, 0.4, modeMul, 3)
		}
		for range r.IntN(3) {
			x, y := s.pointNear(s.discX, s.discY, 0.35*R)
			if s.discDist(x, y) > 1.5 {
				s.blob(c, x, y, 0.025*R, cottonWl, 0.55, 0.8, modeBlend, 3)
			}
		}
	case "hypertensive_retinopathy":
		for range 4 + r.IntN(9) {
			x, y := s.pointNear(s.discX, s.discY, 0.3*R)
			if s.discDist(x, y) < 1.4 {
				continue
			}
			s.flame(c, x, y, uniform(r, 0.025, 0.05)*R)
		}
		for range 2 + r.IntN(5) {
			x, y := s.pointNear(s.discX-s.dir*0.2*R, s.discY, 0.25*R)
			if s.discDist(x, y) > 1.5 {
				s.blob(c, x, y, uniform(r, 0.018, 0.03)*R, cottonWl, 0.6, 0.8, modeBlend, 3)
			}
		}
	case "retinal_vein_occlusion":
		name := "sup"
		if s.rvoArcade == 1 {
			name = "inf"
		}
		path := s.veins[name]
		if len(path) < 4 {
			break
		}
		start := len(path) / 6
		n := 45 + r.IntN(60)
		for range n {
			p := path[start+r.IntN(len(path)-start)]
			// Spread sideways from the vein, mostly to the peripheral side.
			off := r.NormFloat64() * 0.07 * R
			x := p.x - math.Sin(p.heading)*off + r.NormFloat64()*0.02*R
			y := p.y + math.Cos(p.heading)*off + r.NormFloat64()*0.02*R
			if math.Hypot(x-s.cx, y-s.cy) > 0.95*R {
				continue
			}
			if r.IntN(3) == 0 {
				rad := uniform(r, 0.008, 0.02) * R
				c.ellipse(x, y, rad, rad, 0, haemF, 0.9, 0.4, modeMul)
			} else {
				sz := uniform(r, 0.02, 0.05) * R
				c.ellipse(x, y, sz, sz*uniform(r, 0.25, 0.4), p.heading+r.NormFloat64()*0.3, flameF, 0.9, 0.6, modeMul)
			}
		}
		for range 1 + r.IntN(4) {
			p := path[start+r.IntN(len(path)-start)]
			s.blob(c, p.x+r.NormFloat64()*0.05*R, p.y+r.NormFloat64()*0.05*R, 0.022*R, cottonWl, 0.55, 0.8, modeBlend, 3)
		}
	case "retinal_detachment":
		s.detachment(c)
	case "papilledema":
		s.swollenDisc(c)
		for range 2 + r.IntN(6) {
			a := uniform(r, 0, 2*math.Pi)
			d := uniform(r, 1.0, 1.4)
			s.flame(c, s.discX+d*s.discRX*math.Cos(a), s.discY+d*s.discRY*math.Sin(a), uniform(r, 0.02, 0.04)*R)
		}
	}
}

// detachment greys out a large peripheral region with a wavy margin and
// fold lines, keeping the vessels visible on it.
func (s *scene) detachment(c *canvas) {
	r, R := s.rng, s.R
	a := uniform(r, -math.Pi*0.95, -math.Pi*0.05) // mostly superior
	if r.IntN(4) == 0 {
		a = -a
	}
	px, py := s.cx+1.05*R*math.Cos(a), s.cy+1.05*R*math.Sin(a)
	rd := uniform(r, 0.55, 0.75) * R
	edge := 0.04 * R
	freq := 2 * math.Pi / (0.07 * R)
	grey := rgb{196, 190, 182}.scale(math.Min(s.bright, 1.05))
	x0, y0, x1, y1 := c.bbox(px, py, rd+0.1*R, rd+0.1*R)
	pix, stride := c.img.Pix, c.img.Stride
	for y := y0; y < y1; y++ {
		fy := float64(y) + 0.5
		for x := x0; x < x1; x++ {
			o := y*stride + x*4
			p := pix[o : o+3]
			if p[0]|p[1]|p[2] == 0 {
				continue
			}
			fx := float64(x) + 0.5
			n := s.coarse.at(fx, fy)
			d := math.Hypot(fx-px, fy-py) + (n-0.5)*0.2*R
			if d > rd+edge {
				continue
			}
			cov := smoothstep(rd+edge, rd-edge, d)
			l := 0.3*float64(p[0]) + 0.59*float64(p[1]) + 0.11*float64(p[2])
			fold := 1 + 0.05*math.Sin(d*freq+9*n)
			t := rgb{(grey.r*0.45 + l*0.65) * fold, (grey.g*0.45 + l*0.65) * fold, (grey.b*0.45 + l*0.6) * fold}
			k := 0.68 * cov
			p[0] = clamp8(float64(p[0]) + (t.r-float64(p[0]))*k)
			p[1] = clamp8(float64(p[1]) + (t.g-float64(p[1]))*k)
			p[2] = clamp8(float64(p[2]) + (t.b-float64(p[2]))*k)
		}
	}
}

// swollenDisc blurs the margin of the (already enlarged, hyperaemic) disc
// so that the vessels are obscured where they cross it, and adds radial
// striations.
func (s *scene) swollenDisc(c *canvas) {
	ext := 1.7
	x0, y0, x1, y1 := c.bbox(s.discX, s.discY, s.discRX*ext, s.discRY*ext)
	rad := max(1, int(0.12*s.discRX))
	blurred := c.blurRect(x0, y0, x1, y1, rad)
	bw := x1 - x0
	pix, stride := c.img.Pix, c.img.Stride
	for y := y0; y < y1; y++ {
		fy := float64(y) + 0.5
		for x := x0; x < x1; x++ {
			fx := float64(x) + 0.5
			u, v := (fx-s.discX)/s.discRX, (fy-s.discY)/s.discRY
			q := math.Sqrt(u*u + v*v)
			wgt := 1 - smoothstep(0.0, 0.65, math.Abs(q-1))
			if q < 1 {
				wgt = math.Max(wgt, 0.5)
			}
			if wgt <= 0 {
				continue
			}
			stri := 1 + 0.06*math.Sin(math.Atan2(v, u)*36)*(1-smoothstep(0.6, 1.5, math.Abs(q-1)))
			o := y*stride + x*4
			bo := ((y-y0)*bw + (x - x0)) * 4
			for ch := 0; ch < 3; ch++ {
				p := float64(pix[o+ch])
				if p == 0 {
					continue
				}
				b := float64(blurred[bo+ch]) * stri
				pix[o+ch] = clamp8(p + (b-p)*wgt)
			}
		}
	}
}

// globalEffects applies whole-image effects: the cataract's clouding.
func (s *scene) globalEffects(c *canvas) {
	if s.class != "cataract" {
		return
	}
	r := s.rng
	rad := max(1, int(0.008*float64(min(c.w, c.h))*uniform(r, 0.8, 1.3)))
	blurred := c.blurRect(0, 0, c.w, c.h, rad)
	haze := rgb{206, 168, 128}.scale(math.Min(s.bright, 1.05))
	hz := uniform(r, 0.3, 0.45)
	// Brighter glare towards one side.
	gx, gy := s.cx+uniform(r, -0.3, 0.3)*s.R, s.cy+uniform(r, -0.3, 0.3)*s.R
	inv := 1 / (s.R * s.R * 1.6)
	pix := c.img.Pix
	for y := 0; y < c.h; y++ {
		dy := float64(y) + 0.5 - gy
		for x := 0; x < c.w; x++ {
			o := y*c.img.Stride + x*4
			bo := (y*c.w + x) * 4
			if pix[o]|pix[o+1]|pix[o+2] == 0 {
				continue
			}
			dx := float64(x) + 0.5 - gx
			k := hz * (1.15 - (dx*dx+dy*dy)*inv)
			if k < 0.12 {
				k = 0.12
			}
			pix[o] = clamp8(float64(blurred[bo]) + (haze.r-float64(blurred[bo]))*k)
			pix[o+1] = clamp8(float64(blurred[bo+1]) + (haze.g-float64(blurred[bo+1]))*k)
			pix[o+2] = clamp8(float64(blurred[bo+2]) + (haze.b-float64(blurred[bo+2]))*k)
		}
	}
}

// blurRect returns a two-pass (approximately Gaussian) box blur of the
// given rectangle as packed RGBA rows, using c.tmp as scratch.
func (c *canvas) blurRect(x0, y0, x1, y1, rad int) []uint8 {
	bw, bh := x1-x0, y1-y0
	n := bw * bh * 4
	if cap(c.tmp) < 2*n {
		c.tmp = make([]uint8, 2*n)
	}
	a, b := c.tmp[:n], c.tmp[n:2*n]
	for y := 0; y < bh; y++ {
		copy(a[y*bw*4:(y+1)*bw*4], c.img.Pix[(y0+y)*c.img.Stride+x0*4:])
	}
	for range 2 {
		boxH(a, b, bw, bh, rad)
		boxV(b, a, bw, bh, rad)
	}
	return a
}

// boxH blurs rows of src into dst with a box of radius rad (edge clamped).
func boxH(src, dst []uint8, w, h, rad int) {
	div := uint32(2*rad + 1)
	mul := (1 << 24) / div
	for y := 0; y < h; y++ {
		row := src[y*w*4 : (y+1)*w*4]
		out := dst[y*w*4 : (y+1)*w*4]
		var s0, s1, s2 uint32
		for x := -rad; x <= rad; x++ {
			o := min(max(x, 0), w-1) * 4
			s0 += uint32(row[o])
			s1 += uint32(row[o+1])
			s2 += uint32(row[o+2])
		}
		for x := 0; x < w; x++ {
			o := x * 4
			out[o] = uint8((s0*mul + (1 << 23)) >> 24)
			out[o+1] = uint8((s1*mul + (1 << 23)) >> 24)
			out[o+2] = uint8((s2*mul + (1 << 23)) >> 24)
			out[o+3] = 255
			ai := x + rad + 1
			if ai > w-1 {
				ai = w - 1
			}
			si := x - rad
			if si < 0 {
				si = 0
			}
			ai, si = ai*4, si*4
			s0 += uint32(row[ai]) - uint32(row[si])
			s1 += uint32(row[ai+1]) - uint32(row[si+1])
			s2 += uint32(row[ai+2]) - uint32(row[si+2])
		}
	}
}

// boxV blurs columns of src into dst.
func boxV(src, dst []uint8, w, h, rad int) {
	div := uint32(2*rad + 1)
	mul := (1 << 24) / div
	sums := make([]uint32, w*4)
	at := func(y int) []uint8 {
		y = min(max(y, 0), h-1)
		return src[y*w*4 : (y+1)*w*4]
	}
	for y := -rad; y <= rad; y++ {
		r := at(y)
		for i := range sums {
			sums[i] += uint32(r[i])
		}
	}
	for y := 0; y < h; y++ {
		out := dst[y*w*4 : (y+1)*w*4]
		add, sub := at(y+rad+1), at(y-rad)
		for i := range sums {
			out[i] = uint8((sums[i]*mul + (1 << 23)) >> 24)
			sums[i] += uint32(add[i]) - uint32(sub[i])
		}
	}
}
