package imaging

import "encoding/binary"

// exifOrientation parses the Orientation tag (0x0112) from IFD0 of an APP1
// payload that starts with "Exif\0\0". Anything malformed or out of range
// yields 1 (no transform): a broken EXIF block should not reject an image
// whose pixels are fine.
func exifOrientation(app1 []byte) int {
	if len(app1) < 6+8 {
		return 1
	}
	t := app1[6:] // TIFF header
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 1
	}
	n := int64(bo.Uint16(t[off:]))
	for i := int64(0); i < n; i++ {
		e := off + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 1
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		if bo.Uint16(t[e+2:]) != 3 { // SHORT
			return 1
		}
		v := int(bo.Uint16(t[e+8:]))
		if v < 1 || v > 8 {
			return 1
		}
		return v
	}
	return 1
}

// Orient applies an EXIF orientation (1..8) to src, returning the image as
// it should be displayed. Orientations 5..8 swap width and height. Values
// outside 1..8 return src unchanged.
func Orient(src *RGB8, orientation int) *RGB8 {
	if orientation < 2 || orientation > 8 {
		return src
	}
	W, H := src.Width, src.Height
	dw, dh := W, H
	if orientation >= 5 {
		dw, dh = H, W
	}
	dst := NewRGB8(dw, dh)
	for dy := 0; dy < dh; dy++ {
		drow := dst.Pix[3*dw*dy : 3*dw*(dy+1)]
		for dx := 0; dx < dw; dx++ {
			var sx, sy int
			switch orientation {
			case 2: // mirror horizontal
				sx, sy = W-1-dx, dy
			case 3: // rotate 180
				sx, sy = W-1-dx, H-1-dy
			case 4: // mirror vertical
				sx, sy = dx, H-1-dy
			case 5: // transpose
				sx, sy = dy, dx
			case 6: // rotate 90 clockwise
				sx, sy = dy, H-1-dx
			case 7: // transverse
				sx, sy = W-1-dy, H-1-dx
			case 8: // rotate 90 counter-clockwise
				sx, sy = W-1-dy, dx
			}
			s := 3 * (sy*W + sx)
			copy(drow[3*dx:3*dx+3], src.Pix[s:s+3])
		}
	}
	return dst
}
