package demodata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Kinds of shifted batches: what changes between the data a model learnt
// and what a clinic sends later.
const (
	// ShiftDark is an underexposed camera: every pixel at 40% brightness.
	ShiftDark = "dark"
	// ShiftBlur is a camera out of focus: a wide box blur.
	ShiftBlur = "blur"
	// ShiftMix is a different class mix: a referral clinic that sees three
	// of the rare classes and little else.
	ShiftMix = "mix"
)

// Shifts lists the shift kinds.
func Shifts() []string { return []string{ShiftDark, ShiftBlur, ShiftMix} }

// shiftIndexBase keeps shifted images apart from any labelled set's
// indices, so none is a byte-identical copy of a training image.
const shiftIndexBase = 100000

// ShiftFileName is the name of shifted image i: <kind>_NNNNN.jpg, with no
// class in it (the batch is uploaded unlabelled).
func ShiftFileName(kind string, i int) string { return fmt.Sprintf("%s_%05d.jpg", kind, i) }

// GenerateShift writes opts.Total unlabelled images of a shifted batch into
// opts.Out (flat: no class folders) and returns the answer key, file name
// to true class, which only the demo's annotator reads. The same Options
// and kind give the same bytes.
func GenerateShift(ctx context.Context, opts Options, kind string) (map[string]string, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if !slices.Contains(Shifts(), kind) {
		return nil, fmt.Errorf("demodata: shift %q: want one of %v", kind, Shifts())
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("demodata: %w", err)
	}
	classes := shiftClasses(kind, opts.Total)
	key := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, opts.Workers)
	for w := range opts.Workers {
		wg.Go(func() {
			c := newCanvas(opts.Width, opts.Height)
			var buf bytes.Buffer
			for i := w; i < opts.Total; i += opts.Workers {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				class := classes[i]
				newScene(class, shiftIndexBase+i, opts.Width, opts.Height, opts.Seed).render(c)
				apply(kind, c.img)
				buf.Reset()
				if err := jpeg.Encode(&buf, c.img, &jpeg.Options{Quality: opts.Quality}); err != nil {
					errs[w] = fmt.Errorf("demodata: encode shifted %d: %w", i, err)
					return
				}
				name := ShiftFileName(kind, i)
				if err := os.WriteFile(filepath.Join(opts.Out, name), buf.Bytes(), 0o644); err != nil {
					errs[w] = fmt.Errorf("demodata: %w", err)
					return
				}
				mu.Lock()
				key[name] = class
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return key, nil
}

// shiftClasses picks each image's class: the usual mix (Counts) for a
// camera shift, three rare classes for a class-mix shift.
func shiftClasses(kind string, total int) []string {
	var out []string
	if kind == ShiftMix {
		rare := []string{"macular_hole", "papilledema", "retinitis_pigmentosa"}
		for i := range total {
			out = append(out, rare[i%len(rare)])
		}
		return out
	}
	counts := Counts(total)
	for i := 0; len(out) < total; i++ {
		for _, c := range sortedClasses {
			if i < counts[c] {
				out = append(out, c)
			}
		}
	}
	return out
}

func apply(kind string, img *image.RGBA) {
	switch kind {
	case ShiftDark:
		for i := range img.Pix {
			if i%4 != 3 {
				img.Pix[i] = byte(int(img.Pix[i]) * 2 / 5)
			}
		}
	case ShiftBlur:
		r := max(4, img.Bounds().Dx()/48) // visible after the resize to 224
		boxBlur(img, r)
	}
}

// boxBlur blurs img in place with a (2r+1)-wide box, rows then columns,
// with running sums: O(pixels) whatever r.
func boxBlur(img *image.RGBA, r int) {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	pass := func(n, stride, count, step int, at func(line int) int) {
		tmp := make([]int, n*3)
		for line := range count {
			base := at(line)
			for i := range n {
				for c := range 3 {
					tmp[i*3+c] = int(img.Pix[base+i*stride+c])
				}
			}
			for c := range 3 {
				sum, cnt := 0, 0
				for i := 0; i <= r && i < n; i++ {
					sum += tmp[i*3+c]
					cnt++
				}
				for i := range n {
					img.Pix[base+i*stride+c] = byte(sum / cnt)
					if j := i + r + 1; j < n {
						sum += tmp[j*3+c]
						cnt++
					}
					if j := i - r; j >= 0 {
						sum -= tmp[j*3+c]
						cnt--
					}
				}
			}
		}
		_ = step
	}
	pass(w, 4, h, 0, func(y int) int { return y * img.Stride })
	pass(h, img.Stride, w, 0, func(x int) int { return x * 4 })
}
