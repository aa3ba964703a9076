package imaging

import (
	"image"
	"image/color"
)

// toRGB8 converts any decoded image to packed RGB. Fast paths cover what the
// Go decoders return for common files; the generic path goes through
// color.RGBA64 (premultiplied), which flattens alpha on black. 16-bit
// samples keep their high byte, as Pillow does for 16-bit RGB.
func toRGB8(img image.Image) *RGB8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewRGB8(w, h)
	switch m := img.(type) {
	case *image.RGBA: // premultiplied: already flattened on black
		for y := 0; y < h; y++ {
			s := m.Pix[(y)*m.Stride : y*m.Stride+4*w]
			d := out.Pix[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				d[3*x], d[3*x+1], d[3*x+2] = s[4*x], s[4*x+1], s[4*x+2]
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+4*w]
			d := out.Pix[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				a := int(s[4*x+3])
				if a == 255 {
					d[3*x], d[3*x+1], d[3*x+2] = s[4*x], s[4*x+1], s[4*x+2]
					continue
				}
				d[3*x] = byte(muldiv255(int(s[4*x]), a))
				d[3*x+1] = byte(muldiv255(int(s[4*x+1]), a))
				d[3*x+2] = byte(muldiv255(int(s[4*x+2]), a))
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+w]
			d := out.Pix[3*w*y : 3*w*(y+1)]
			for x, v := range s {
				d[3*x], d[3*x+1], d[3*x+2] = v, v, v
			}
		}
	case *image.Paletted:
		// Precompute the palette once (alpha flattened on black).
		var lut [256][3]byte
		for i, c := range m.Palette {
			r, g, bl, _ := c.RGBA()
			lut[i] = [3]byte{byte(r >> 8), byte(g >> 8), byte(bl >> 8)}
		}
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+w]
			d := out.Pix[3*w*y : 3*w*(y+1)]
			for x, v := range s {
				c := lut[v]
				d[3*x], d[3*x+1], d[3*x+2] = c[0], c[1], c[2]
			}
		}
	default:
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.RGBA64Model.Convert(img.At(x, y)).(color.RGBA64)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = byte(c.R>>8), byte(c.G>>8), byte(c.B>>8)
				i += 3
			}
		}
	}
	return out
}

// muldiv255 is Pillow's MULDIV255: a*b/255 rounded, without a division.
func muldiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}
