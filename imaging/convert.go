package imaging

import (
	"image"
	"image/color"
)

// toRGB8 converts a decoded image to packed RGB the way Pillow's
// Image.open(f).convert("RGB") does, which is what the training side saw:
//
//   - Alpha is dropped, not composited: an RGBA, LA or palette-with-tRNS
//     pixel keeps its stored colour whatever its alpha, so a transparent
//     area shows the colour the file stores under it (often black, but not
//     always). Flattening on black instead darkened half-transparent pixels
//     (MAE 23.7, max 126 against Pillow on a half-transparent PNG).
//   - Premultiplied ("associated alpha") pixels, which only TIFF stores and
//     x/image returns as *image.RGBA, are unpremultiplied first with
//     Pillow's rule (unpackRGBa: v*255/a, truncated, clipped; a = 0 gives
//     black), since Pillow reads such TIFFs as RGBA.
//   - 16-bit samples keep their high byte, as Pillow does for 16-bit RGB(A).
//     16-bit greyscale is the one deliberate difference: Pillow opens it as
//     mode "I" and convert("RGB") clips every value above 255 to white; here
//     it keeps the high byte like 16-bit RGB, so the image is not lost.
func toRGB8(img image.Image) *RGB8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewRGB8(w, h)
	switch m := img.(type) {
	case *image.RGBA: // premultiplied (opaque for every PNG; TIFF associated alpha)
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+4*w]
			d := out.Pix[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				a := int(s[4*x+3])
				switch a {
				case 255:
					d[3*x], d[3*x+1], d[3*x+2] = s[4*x], s[4*x+1], s[4*x+2]
				case 0:
					d[3*x], d[3*x+1], d[3*x+2] = 0, 0, 0
				default:
					d[3*x] = unpremultiply(s[4*x], a)
					d[3*x+1] = unpremultiply(s[4*x+1], a)
					d[3*x+2] = unpremultiply(s[4*x+2], a)
				}
			}
		}
	case *image.NRGBA: // straight alpha: dropped
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+4*w]
			d := out.Pix[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				d[3*x], d[3*x+1], d[3*x+2] = s[4*x], s[4*x+1], s[4*x+2]
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
		// The palette's colours, transparency dropped (Pillow's P -> RGB).
		var lut [256][3]byte
		for i, c := range m.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut[i] = [3]byte{n.R, n.G, n.B}
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
		// NRGBA64, RGBA64, Gray16, CMYK, ...: straight colour, high byte.
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBA64Model.Convert(img.At(x, y)).(color.NRGBA64)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = byte(c.R>>8), byte(c.G>>8), byte(c.B>>8)
				i += 3
			}
		}
	}
	return out
}

// unpremultiply is Pillow's unpackRGBa for 0 < a < 255: v*255/a, clipped.
func unpremultiply(v byte, a int) byte {
	return byte(min(int(v)*255/a, 255))
}

// muldiv255 is Pillow's MULDIV255: a*b/255 rounded, without a division.
func muldiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}
