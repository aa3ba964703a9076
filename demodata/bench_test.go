package demodata

import (
	"bytes"
	"image/jpeg"
	"testing"
)

// BenchmarkImage2048 measures the drawing work for one full-size image.
func BenchmarkImage2048(b *testing.B) {
	classes := Classes()
	c := newCanvas(DefaultWidth, DefaultHeight)
	i := 0
	for b.Loop() {
		class := classes[i%len(classes)]
		newScene(class, i, DefaultWidth, DefaultHeight, 1).render(c)
		i++
	}
}

// BenchmarkImage2048Encode adds JPEG encoding (quality 90) to the drawing.
func BenchmarkImage2048Encode(b *testing.B) {
	classes := Classes()
	c := newCanvas(DefaultWidth, DefaultHeight)
	var buf bytes.Buffer
	i := 0
	for b.Loop() {
		class := classes[i%len(classes)]
		newScene(class, i, DefaultWidth, DefaultHeight, 1).render(c)
		buf.Reset()
		if err := jpeg.Encode(&buf, c.img, &jpeg.Options{Quality: DefaultQuality}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
