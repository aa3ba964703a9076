package imaging

import (
	"math"
	"sync"
)

// RGB8 is a packed 8-bit RGB image: 3 bytes per pixel, rows of 3*Width bytes,
// no padding.
type RGB8 struct {
	Pix           []byte
	Width, Height int
}

// NewRGB8 allocates a zeroed w x h image.
func NewRGB8(w, h int) *RGB8 {
	return &RGB8{Pix: make([]byte, 3*w*h), Width: w, Height: h}
}

// Fixed point layout of Pillow's 8bpc resampler (Resample.c): 8 bits for the
// result, 2 spare bits for overshoot, so 22 fractional bits.
const (
	precisionBits = 32 - 8 - 2
	roundHalf     = 1 << (precisionBits - 1)
)

// coeffs is a precomputed 1-D resampling table, laid out like Pillow's
// precompute_coeffs: for output pixel i the source window starts at
// bounds[2i] and has bounds[2i+1] taps whose fixed-point weights are
// k[i*ksize : i*ksize+bounds[2i+1]].
type coeffs struct {
	bounds []int32
	k      []int32
	ksize  int
}

// bilinearFilter is Pillow's triangle filter (support 1.0).
func bilinearFilter(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// precomputeCoeffs reproduces Pillow's precompute_coeffs +
// normalize_coeffs_8bpc for the BILINEAR filter and the full-image box
// (in0 = 0, in1 = inSize), in the same float64 operation order so the
// fixed-point weights are bit-identical.
func precomputeCoeffs(inSize, outSize int) *coeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := 1.0 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := &coeffs{
		bounds: make([]int32, 2*outSize),
		k:      make([]int32, outSize*ksize),
		ksize:  ksize,
	}
	w := make([]float64, ksize)
	ss := 1.0 / filterscale
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		// C's (int) cast truncates toward zero; Go's int() does the same.
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = bilinearFilter((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		k := c.k[xx*ksize : (xx+1)*ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		c.bounds[2*xx] = int32(xmin)
		c.bounds[2*xx+1] = int32(xmax)
	}
	return c
}

// Coefficient tables depend only on (inSize, outSize), and a service sees the
// same few sizes over and over, so they are cached. The cache is bounded so
// that adversarial inputs with many distinct sizes cannot grow it forever.
var coeffCache struct {
	sync.RWMutex
	m map[[2]int]*coeffs
}

const coeffCacheMax = 256

func coeffsFor(inSize, outSize int) *coeffs {
	key := [2]int{inSize, outSize}
	coeffCache.RLock()
	c := coeffCache.m[key]
	coeffCache.RUnlock()
	if c != nil {
		return c
	}
	c = precomputeCoeffs(inSize, outSize)
	coeffCache.Lock()
	if coeffCache.m == nil {
		coeffCache.m = make(map[[2]int]*coeffs)
	}
	if len(coeffCache.m) < coeffCacheMax {
		coeffCache.m[key] = c
	}
	coeffCache.Unlock()
	return c
}

// clip8 is Pillow's clip8: drop the fraction and saturate to 0..255.
func clip8(v int32) byte {
	v >>= precisionBits
	if uint32(v) > 255 {
		if v < 0 {
			return 0
		}
		return 255
	}
	return byte(v)
}

// resampleRow runs the horizontal pass for one RGB row: src has the source
// width, dst has len(c.bounds)/2 pixels.
func resampleRow(dst, src []byte, c *coeffs) {
	ks := c.ksize
	n := len(c.bounds) / 2
	dst = dst[:3*n]
	for xx := 0; xx < n; xx++ {
		xmin := int(c.bounds[2*xx])
		cnt := int(c.bounds[2*xx+1])
		k := c.k[xx*ks : xx*ks+cnt]
		s := src[3*xmin : 3*(xmin+cnt)]
		var s0, s1, s2 int32 = roundHalf, roundHalf, roundHalf
		for i, w := range k {
			p := s[3*i : 3*i+3 : 3*i+3]
			s0 += int32(p[0]) * w
			s1 += int32(p[1]) * w
			s2 += int32(p[2]) * w
		}
		d := dst[3*xx : 3*xx+3 : 3*xx+3]
		d[0] = clip8(s0)
		d[1] = clip8(s1)
		d[2] = clip8(s2)
	}
}

// resampleVertical runs the vertical pass: tmp holds rows of rowBytes bytes,
// where row 0 is source row `offset`; out receives len(c.bounds)/2 rows.
// acc is scratch of at least rowBytes int32s. Accumulating a whole row per
// tap keeps the inner loop a linear sweep over memory.
func resampleVertical(out, tmp []byte, rowBytes, offset int, c *coeffs, acc []int32) {
	ks := c.ksize
	n := len(c.bounds) / 2
	acc = acc[:rowBytes]
	for yy := 0; yy < n; yy++ {
		ymin := int(c.bounds[2*yy]) - offset
		cnt := int(c.bounds[2*yy+1])
		k := c.k[yy*ks : yy*ks+cnt]
		for i := range acc {
			acc[i] = roundHalf
		}
		for j, w := range k {
			row := tmp[(ymin+j)*rowBytes : (ymin+j+1)*rowBytes]
			row = row[:len(acc)]
			for i, v := range row {
				acc[i] += int32(v) * w
			}
		}
		dst := out[yy*rowBytes : (yy+1)*rowBytes]
		dst = dst[:len(acc)]
		for i, v := range acc {
			dst[i] = clip8(v)
		}
	}
}

// Scratch buffers for the intermediate (horizontally resampled) image and the
// vertical accumulators; pooled because the hot path runs once per image.
var (
	bytePool  sync.Pool // *[]byte
	int32Pool sync.Pool // *[]int32
)

func getBytes(n int) *[]byte {
	if p, ok := bytePool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n)
	return &b
}

func putBytes(p *[]byte) { bytePool.Put(p) }

func getInt32s(n int) *[]int32 {
	if p, ok := int32Pool.Get().(*[]int32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]int32, n)
	return &b
}

func putInt32s(p *[]int32) { int32Pool.Put(p) }

// resizer streams source rows through Pillow's two-pass resample
// (ImagingResampleInner): the horizontal pass is applied to each source row as
// it arrives, keeping only rows [yFirst, yLast) that the vertical pass reads,
// exactly the intermediate image Pillow allocates; the vertical pass runs in
// finish. Passes are skipped when a dimension is unchanged, as in Pillow.
type resizer struct {
	srcW, srcH, dstW, dstH int
	hc, vc                 *coeffs
	needH, needV           bool
	yFirst, yLast          int
	tmp                    *[]byte
}

func newResizer(srcW, srcH, dstW, dstH int) *resizer {
	r := &resizer{srcW: srcW, srcH: srcH, dstW: dstW, dstH: dstH}
	r.needH = dstW != srcW
	r.needV = dstH != srcH
	r.vc = coeffsFor(srcH, dstH)
	r.yFirst = int(r.vc.bounds[0])
	r.yLast = int(r.vc.bounds[2*dstH-2] + r.vc.bounds[2*dstH-1])
	if r.needH {
		r.hc = coeffsFor(srcW, dstW)
	}
	r.tmp = getBytes((r.yLast - r.yFirst) * 3 * dstW)
	return r
}

// wants reports whether source row y contributes to the output.
func (r *resizer) wants(y int) bool { return y >= r.yFirst && y < r.yLast }

// row feeds source row y (3*srcW bytes).
func (r *resizer) row(y int, src []byte) {
	if !r.wants(y) {
		return
	}
	rb := 3 * r.dstW
	dst := (*r.tmp)[(y-r.yFirst)*rb : (y-r.yFirst+1)*rb]
	if r.needH {
		resampleRow(dst, src, r.hc)
	} else {
		copy(dst, src[:rb])
	}
}

// finish runs the vertical pass into a new dstW x dstH image and releases
// the scratch buffers.
func (r *resizer) finish() *RGB8 {
	out := NewRGB8(r.dstW, r.dstH)
	rb := 3 * r.dstW
	if r.needV {
		acc := getInt32s(rb)
		resampleVertical(out.Pix, *r.tmp, rb, r.yFirst, r.vc, *acc)
		putInt32s(acc)
	} else {
		// yFirst == 0 and yLast == srcH == dstH when no vertical pass is needed.
		copy(out.Pix, *r.tmp)
	}
	putBytes(r.tmp)
	r.tmp = nil
	return out
}

// Resize scales src to exactly w x h (aspect ratio not kept) with Pillow's
// Image.resize((w, h), Image.BILINEAR) semantics, bit-exact with Pillow's
// 8-bit fixed point implementation. It panics if w or h is not positive.
func Resize(src *RGB8, w, h int) *RGB8 {
	if w <= 0 || h <= 0 {
		panic("imaging: Resize to non-positive size")
	}
	r := newResizer(src.Width, src.Height, w, h)
	sb := 3 * src.Width
	for y := r.yFirst; y < r.yLast; y++ {
		r.row(y, src.Pix[y*sb:(y+1)*sb])
	}
	return r.finish()
}
