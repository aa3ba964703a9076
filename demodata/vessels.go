package demodata

import "math"

type vessel struct {
	x, y, heading, w float64
	vein             bool
	arc              float64 // 0: free; ±1: temporal arcade circling the fovea
	depth            int
	travelled        float64
	tort             float64
	name             string // recorded main vein name, "" otherwise
}

type grower struct {
	s     *scene
	c     *canvas
	step  float64
	minW  float64
	refW  float64
	faz   float64
	limit float64 // squared radius where vessels stop
}

func angDiff(a, b float64) float64 {
	d := math.Mod(a-b, 2*math.Pi)
	if d > math.Pi {
		d -= 2 * math.Pi
	} else if d < -math.Pi {
		d += 2 * math.Pi
	}
	return d
}

// drawVessels grows the retinal vessel trees from the disc into the artery
// and vein masks: superior and inferior temporal arcades that arch around
// the macula, nasal branches, and small macular branches.
func (s *scene) drawVessels(c *canvas) {
	R := s.R
	g := &grower{
		s: s, c: c,
		step:  math.Max(1.2, 0.022*R),
		minW:  math.Max(0.55, 0.0032*R),
		refW:  0.012 * R,
		faz:   0.075 * R,
		limit: (0.985 * R) * (0.985 * R),
	}
	r := s.rng
	axis := math.Atan2(s.fovY-s.discY, s.fovX-s.discX) // disc -> fovea
	wv := 0.021 * R * s.veinW
	wa := 0.016 * R * s.arteryW
	// Superior (up in the image: negative y) and inferior arcades.
	up := axis + math.Pi/2
	if math.Sin(up) > 0 {
		up = axis - math.Pi/2
	}
	down := up + math.Pi
	// Turn the initial heading 15-25° towards the fovea.
	tilt := func(h float64, deg float64) float64 {
		return h + angDiff(axis, h)*deg/90
	}
	// The arcade circles the fovea in the rotation sense that matches
	// its initial heading.
	sense := func(h float64) float64 {
		vx, vy := s.discX-s.fovX, s.discY-s.fovY
		// tangent for sense +1 is (-vy, vx)
		if -vy*math.Cos(h)+vx*math.Sin(h) >= 0 {
			return 1
		}
		return -1
	}
	type start struct {
		h, w   float64
		vein   bool
		arc    bool
		name   string
		offset float64
	}
	nasal := axis + math.Pi
	starts := []start{
		{tilt(up, uniform(r, 12, 24)), wv, true, true, "sup", -0.15},
		{tilt(up, uniform(r, 18, 30)), wa, false, true, "", 0.15},
		{tilt(down, uniform(r, 12, 24)), wv, true, true, "inf", 0.15},
		{tilt(down, uniform(r, 18, 30)), wa, false, true, "", -0.15},
		{nasal + angDiff(up, nasal)*uniform(r, 0.35, 0.6), wv * 0.75, true, false, "", 0},
		{nasal + angDiff(up, nasal)*uniform(r, 0.45, 0.7), wa * 0.75, false, false, "", 0},
		{nasal + angDiff(down, nasal)*uniform(r, 0.35, 0.6), wv * 0.75, true, false, "", 0},
		{nasal + angDiff(down, nasal)*uniform(r, 0.45, 0.7), wa * 0.75, false, false, "", 0},
		{nasal + r.NormFloat64()*0.2, wv * 0.45, true, false, "", 0},
		{axis + uniform(r, -0.35, -0.1), wa * 0.4, false, false, "", 0},
		{axis + uniform(r, 0.1, 0.35), wv * 0.4, true, false, "", 0},
	}
	for _, st := range starts {
		v := vessel{
			x:       s.cupX + st.offset*s.discRX*math.Cos(st.h) + uniform(r, -0.1, 0.1)*s.discRX,
			y:       s.cupY + uniform(r, -0.15, 0.15)*s.discRY,
			heading: st.h,
			w:       st.w,
			vein:    st.vein,
			tort:    s.tort,
			name:    st.name,
		}
		if st.arc {
			v.arc = sense(st.h)
		}
		if s.rvoArcade >= 0 && st.vein && ((s.rvoArcade == 0 && st.name == "sup") || (s.rvoArcade == 1 && st.name == "inf")) {
			v.w *= 1.35
			v.tort *= 1.8
		}
		g.grow(v)
	}
}

func (g *grower) grow(v vessel) {
	s, r := g.s, g.s.rng
	R := s.R
	maxSteps := int(2.2/0.022) + 10
	for i := 0; i < maxSteps; i++ {
		h := v.heading + r.NormFloat64()*0.085*v.tort
		fx, fy := v.x-s.fovX, v.y-s.fovY
		d := math.Hypot(fx, fy)
		if d < g.faz {
			return
		}
		if v.arc != 0 {
			tx, ty := -fy*v.arc/d, fx*v.arc/d
			rArc := (0.34 + 0.30*v.travelled/R) * R
			k := 2.4 * (d - rArc) / R
			dx, dy := tx-k*fx/d, ty-k*fy/d
			h += 0.22 * angDiff(math.Atan2(dy, dx), h)
		} else if d < 0.32*R && v.w > 0.45*g.refW {
			// Larger vessels avoid the macula.
			h += 0.2 * (1 - d/(0.32*R)) * angDiff(math.Atan2(fy, fx), h)
		}
		nx := v.x + math.Cos(h)*g.step
		ny := v.y + math.Sin(h)*g.step
		ex, ey := nx-s.cx, ny-s.cy
		if ex*ex+ey*ey > g.limit {
			return
		}
		nw := v.w * 0.989
		g.segment(v.x, v.y, nx, ny, (v.w+nw)/2, v.vein)
		if v.name != "" {
			s.veins[v.name] = append(s.veins[v.name], vpt{nx, ny, nw, h})
		}
		v.x, v.y, v.heading, v.w = nx, ny, h, nw
		v.travelled += g.step
		if v.w < g.minW {
			return
		}
		if v.depth < 4 && v.w > 2.4*g.minW && i > 2 && r.Float64() < 0.11 {
			child := v
			child.depth++
			child.arc = 0
			child.name = ""
			child.travelled = 0
			child.w = v.w * uniform(r, 0.48, 0.72)
			ang := uniform(r, 0.45, 1.05)
			// Side towards the fovea?
			cross := math.Cos(h)*(s.fovY-v.y) - math.Sin(h)*(s.fovX-v.x)
			side := 1.0
			if cross < 0 {
				side = -1
			}
			if r.Float64() < 0.5 {
				side = -side // away from the fovea
			} else if v.arc != 0 {
				child.w *= 0.75
			}
			child.heading = h + side*ang
			v.w *= 0.93
			v.heading -= side * 0.12
			g.grow(child)
		}
	}
}

// segment draws a vessel segment as a capsule into the artery or vein mask
// with a cylindrical absorption profile (darker centre) and, for larger
// arteries, a light central reflex.
func (g *grower) segment(x0, y0, x1, y1, w float64, vein bool) {
	c := g.c
	m := c.artery
	if vein {
		m = c.vein
	}
	hw := w / 2
	strength := 0.5 + 0.5*math.Min(1, w/g.refW)
	reflex := !vein && hw > 2.5
	bx0 := max(int(math.Floor(math.Min(x0, x1)-hw-1)), 0)
	by0 := max(int(math.Floor(math.Min(y0, y1)-hw-1)), 0)
	bx1 := min(int(math.Ceil(math.Max(x0, x1)+hw+1)), c.w)
	by1 := min(int(math.Ceil(math.Max(y0, y1)+hw+1)), c.h)
	dx, dy := x1-x0, y1-y0
	l2 := dx*dx + dy*dy
	inv := 0.0
	if l2 > 0 {
		inv = 1 / l2
	}
	lim := (hw + 0.5) * (hw + 0.5)
	invHW := 1 / math.Max(hw, 0.5)
	for y := by0; y < by1; y++ {
		py := float64(y) + 0.5 - y0
		row := m[y*c.w : (y+1)*c.w]
		for x := bx0; x < bx1; x++ {
			px := float64(x) + 0.5 - x0
			t := (px*dx + py*dy) * inv
			if t < 0 {
				t = 0
			} else if t > 1 {
				t = 1
			}
			ex, ey := px-t*dx, py-t*dy
			d2 := ex*ex + ey*ey
			if d2 >= lim {
				continue
			}
			d := math.Sqrt(d2)
			cov := hw + 0.5 - d
			if cov > 1 {
				cov = 1
			}
			rr := d * invHW
			prof := 1 - rr*rr
			if prof < 0 {
				prof = 0
			}
			val := cov * strength * (0.6 + 0.4*math.Sqrt(prof))
			if reflex && rr < 0.3 {
				val *= 1 - 0.35*(1-rr/0.3)
			}
			u := uint8(val*255 + 0.5)
			if u > row[x] {
				row[x] = u
			}
		}
	}
}
