package imaging

import "image"

// Lossy WebP (VP8) stores 4:2:0 YCbCr in the BT.601 limited ("video") range.
// golang.org/x/image/webp hands back those planes as an *image.YCbCr (or
// *image.NYCbCrA), whose At converts with the full-range JFIF formula and
// nearest-neighbour chroma: black came out as 16, white as 235. Pillow
// decodes WebP with libwebp, so the resize stage reproduces libwebp's own
// conversion instead, bit for bit:
//
//   - chroma is upsampled with libwebp's "fancy upsampling" (the default of
//     WebPDecode, src/dsp/upsampling.c: UpsampleRgbaLinePair), a 9-3-3-1
//     bilinear interpolation with its exact intermediate rounding, rows
//     paired as io_dec.c's EmitFancyRGB pairs them;
//   - each pixel is converted with VP8YuvToRgb (src/dsp/yuv.h): 14-bit fixed
//     point, MultHi(v, c) = v*c >> 8, then >> 6 with clipping.
//
// libwebp's SSE2 and NEON versions are bit-exact with these C functions.

// webpYUVToRGB converts a decoded lossy WebP frame to packed RGB as libwebp
// does. Alpha, if any, is not applied (Pillow's convert("RGB") drops it). It
// returns nil for planes that are not 4:2:0 at the origin, which the caller
// then converts generically (x/image never produces them).
func webpYUVToRGB(m *image.YCbCr) *RGB8 {
	b := m.Rect
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 || b.Min != (image.Point{}) {
		return nil
	}
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil
	}
	out := NewRGB8(w, h)
	yRow := func(y int) []byte { return m.Y[y*m.YStride : y*m.YStride+w] }
	cw := (w + 1) / 2
	uRow := func(j int) []byte { return m.Cb[j*m.CStride : j*m.CStride+cw] }
	vRow := func(j int) []byte { return m.Cr[j*m.CStride : j*m.CStride+cw] }
	dst := func(y int) []byte { return out.Pix[3*w*y : 3*w*(y+1)] }

	// Row 0 alone, its chroma row mirrored at the top edge.
	upsampleLinePair(yRow(0), nil, uRow(0), vRow(0), uRow(0), vRow(0), dst(0), nil, w)
	// Rows 2k-1 and 2k between chroma rows k-1 and k.
	k := 1
	for ; 2*k <= h-1; k++ {
		upsampleLinePair(yRow(2*k-1), yRow(2*k), uRow(k-1), vRow(k-1), uRow(k), vRow(k), dst(2*k-1), dst(2*k), w)
	}
	// An even height leaves the last row alone, mirrored at the bottom edge.
	if h%2 == 0 {
		j := h/2 - 1
		upsampleLinePair(yRow(h-1), nil, uRow(j), vRow(j), uRow(j), vRow(j), dst(h-1), nil, w)
	}
	return out
}

// upsampleLinePair is libwebp's UPSAMPLE_FUNC for RGB output: the luma rows
// topY and bottomY (nil: none) lie between the chroma rows top* and cur*.
// libwebp packs u and v into one uint32 (u | v<<16) and computes both at
// once; the halves never carry into each other, so computing them
// separately gives the same values.
func upsampleLinePair(topY, bottomY, topU, topV, curU, curV, topDst, bottomDst []byte, n int) {
	lastPair := (n - 1) >> 1
	tlU, tlV := int(topU[0]), int(topV[0])
	lU, lV := int(curU[0]), int(curV[0])
	yuvToRGB(topDst[0:3], int(topY[0]), (3*tlU+lU+2)>>2, (3*tlV+lV+2)>>2)
	if bottomY != nil {
		yuvToRGB(bottomDst[0:3], int(bottomY[0]), (3*lU+tlU+2)>>2, (3*lV+tlV+2)>>2)
	}
	for x := 1; x <= lastPair; x++ {
		tU, tV := int(topU[x]), int(topV[x])
		u, v := int(curU[x]), int(curV[x])
		// Invariants of the first and second diagonals.
		avgU := tlU + tU + lU + u + 8
		avgV := tlV + tV + lV + v + 8
		d12U, d12V := (avgU+2*(tU+lU))>>3, (avgV+2*(tV+lV))>>3
		d03U, d03V := (avgU+2*(tlU+u))>>3, (avgV+2*(tlV+v))>>3
		o1, o2 := 3*(2*x-1), 3*(2*x)
		yuvToRGB(topDst[o1:o1+3], int(topY[2*x-1]), (d12U+tlU)>>1, (d12V+tlV)>>1)
		yuvToRGB(topDst[o2:o2+3], int(topY[2*x]), (d03U+tU)>>1, (d03V+tV)>>1)
		if bottomY != nil {
			yuvToRGB(bottomDst[o1:o1+3], int(bottomY[2*x-1]), (d03U+lU)>>1, (d03V+lV)>>1)
			yuvToRGB(bottomDst[o2:o2+3], int(bottomY[2*x]), (d12U+u)>>1, (d12V+v)>>1)
		}
		tlU, tlV, lU, lV = tU, tV, u, v
	}
	if n&1 == 0 {
		o := 3 * (n - 1)
		yuvToRGB(topDst[o:o+3], int(topY[n-1]), (3*tlU+lU+2)>>2, (3*tlV+lV+2)>>2)
		if bottomY != nil {
			yuvToRGB(bottomDst[o:o+3], int(bottomY[n-1]), (3*lU+tlU+2)>>2, (3*lV+tlV+2)>>2)
		}
	}
}

// yuvToRGB is libwebp's VP8YuvToRgb.
func yuvToRGB(dst []byte, y, u, v int) {
	dst[0] = vp8Clip8(multHi(y, 19077) + multHi(v, 26149) - 14234)
	dst[1] = vp8Clip8(multHi(y, 19077) - multHi(u, 6419) - multHi(v, 13320) + 8708)
	dst[2] = vp8Clip8(multHi(y, 19077) + multHi(u, 33050) - 17685)
}

func multHi(v, coeff int) int { return v * coeff >> 8 }

// vp8Clip8 is VP8Clip8: drop the 6 fractional bits, clip to 0..255.
func vp8Clip8(v int) byte {
	const mask = 256<<6 - 1
	if v&^mask == 0 {
		return byte(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}
