package imaging

import (
	"fmt"
	"image"
	"image/png"
	"io"
	"sync"
)

// pngBuffers lets the encoder reuse its zlib writer and row buffers.
type pngBuffers struct{ p sync.Pool }

func (b *pngBuffers) Get() *png.EncoderBuffer {
	if v, ok := b.p.Get().(*png.EncoderBuffer); ok {
		return v
	}
	return nil
}
func (b *pngBuffers) Put(v *png.EncoderBuffer) { b.p.Put(v) }

// BestSpeed: the output is lossless either way and only a few KB larger; the
// default level costs several times more CPU on this hot path.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngBuffers{}}

var rgbaPool sync.Pool // *image.RGBA

// EncodePNG writes packed RGB (3*width*height bytes) as an 8-bit RGB PNG.
func EncodePNG(w io.Writer, rgb []byte, width, height int) error {
	if width <= 0 || height <= 0 || len(rgb) != 3*width*height {
		return fmt.Errorf("encode png: %d bytes do not hold %dx%d RGB", len(rgb), width, height)
	}
	// image/png writes opaque *image.RGBA as colour type 2 (RGB, no alpha).
	img, _ := rgbaPool.Get().(*image.RGBA)
	if img == nil || img.Rect.Dx() != width || img.Rect.Dy() != height {
		img = image.NewRGBA(image.Rect(0, 0, width, height))
	}
	p := img.Pix
	for i, j := 0, 0; i < len(rgb); i, j = i+3, j+4 {
		q := p[j : j+4 : j+4]
		q[0], q[1], q[2], q[3] = rgb[i], rgb[i+1], rgb[i+2], 0xff
	}
	err := pngEncoder.Encode(w, img)
	rgbaPool.Put(img)
	if err != nil {
		return fmt.Errorf("encode png: %w", err)
	}
	return nil
}
