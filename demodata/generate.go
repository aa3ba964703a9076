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
	"runtime"
	"sync"
)

// Defaults applied by Generate and Image to zero-valued Options fields.
const (
	DefaultWidth   = 2048
	DefaultHeight  = 1536
	DefaultQuality = 90
	minSide        = 16
)

// Options configures Generate and Image. Zero Width, Height, Quality and
// Workers mean DefaultWidth, DefaultHeight, DefaultQuality and GOMAXPROCS.
type Options struct {
	// Out is the root directory of the ImageFolder tree (required by
	// Generate; ignored by Image).
	Out string
	// Total is the number of images, split over the classes by Counts
	// (required by Generate, >= 1; ignored by Image).
	Total int
	// Width and Height of every image in pixels (>= 16).
	Width, Height int
	// Quality is the JPEG quality, 1..100.
	Quality int
	// Seed selects the data set; the same Options give identical files.
	Seed uint64
	// Workers is the number of concurrent renderers.
	Workers int
	// Progress, if set, is called after each written image with the number
	// of images done so far. Calls are serialised and done increases by one
	// each call.
	Progress func(done, total int)
}

// Summary reports what Generate wrote.
type Summary struct {
	Counts map[string]int // images per class
	Files  int            // files written
	Bytes  int64          // total bytes written
}

func (o Options) withDefaults() Options {
	if o.Width == 0 {
		o.Width = DefaultWidth
	}
	if o.Height == 0 {
		o.Height = DefaultHeight
	}
	if o.Quality == 0 {
		o.Quality = DefaultQuality
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o
}

func (o Options) validateImage() error {
	if o.Width < minSide || o.Height < minSide {
		return fmt.Errorf("demodata: image size %dx%d too small: width and height must be >= %d", o.Width, o.Height, minSide)
	}
	if o.Width > 1<<14 || o.Height > 1<<14 {
		return fmt.Errorf("demodata: image size %dx%d too large: width and height must be <= %d", o.Width, o.Height, 1<<14)
	}
	return nil
}

func (o Options) validate() error {
	var errs []error
	if o.Out == "" {
		errs = append(errs, errors.New("demodata: Out (output directory) is empty"))
	}
	if o.Total < 1 {
		errs = append(errs, fmt.Errorf("demodata: Total must be >= 1, got %d", o.Total))
	}
	if err := o.validateImage(); err != nil {
		errs = append(errs, err)
	}
	if o.Quality < 1 || o.Quality > 100 {
		errs = append(errs, fmt.Errorf("demodata: Quality must be in 1..100, got %d", o.Quality))
	}
	return errors.Join(errs...)
}

// Image renders image number index of class in memory, exactly as Generate
// would before JPEG encoding. Out, Total, Quality, Workers and Progress are
// ignored.
func Image(class string, index int, opts Options) (*image.RGBA, error) {
	opts = opts.withDefaults()
	if !knownClass(class) {
		return nil, fmt.Errorf("demodata: unknown class %q", class)
	}
	if index < 0 {
		return nil, fmt.Errorf("demodata: negative index %d", index)
	}
	if err := opts.validateImage(); err != nil {
		return nil, err
	}
	c := newCanvas(opts.Width, opts.Height)
	newScene(class, index, opts.Width, opts.Height, opts.Seed).render(c)
	return c.img, nil
}

// FileName returns the file name (without directory) of image index of
// class: <class>_<NNNN>.jpg.
func FileName(class string, index int) string {
	return fmt.Sprintf("%s_%04d.jpg", class, index)
}

type job struct {
	class string
	index int
}

type result struct {
	class string
	bytes int64
	err   error
}

// Generate writes the data set to <Out>/<class>/<class>_<NNNN>.jpg, one
// directory per class (also for classes that get no images), with per-class
// counts from Counts(Total). Images are rendered concurrently; each file's
// content depends only on (Seed, class, index, Width, Height, Quality), so
// the output is byte-for-byte reproducible. Existing files with the same
// names are replaced; files are written via a temporary name and renamed,
// so an interrupted run leaves no partial JPEGs. On cancellation Generate
// stops starting new images and returns ctx.Err() together with a Summary
// of what was written.
func Generate(ctx context.Context, opts Options) (Summary, error) {
	opts = opts.withDefaults()
	sum := Summary{Counts: map[string]int{}}
	if err := opts.validate(); err != nil {
		return sum, err
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	counts := Counts(opts.Total)
	var jobs []job
	for _, class := range sortedClasses {
		if err := os.MkdirAll(filepath.Join(opts.Out, class), 0o755); err != nil {
			return sum, fmt.Errorf("demodata: %w", err)
		}
		sum.Counts[class] = 0
		for i := range counts[class] {
			jobs = append(jobs, job{class, i})
		}
	}
	// Interleave classes so progress and cancellation are spread fairly:
	// order by index, then class.
	ordered := make([]job, 0, len(jobs))
	for i := 0; len(ordered) < len(jobs); i++ {
		for _, class := range sortedClasses {
			if i < counts[class] {
				ordered = append(ordered, job{class, i})
			}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobCh := make(chan job)
	resCh := make(chan result)
	workers := min(opts.Workers, len(ordered))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newCanvas(opts.Width, opts.Height)
			var buf bytes.Buffer
			for j := range jobCh {
				if ctx.Err() != nil {
					continue // drain without work
				}
				n, err := writeOne(c, &buf, j, opts)
				resCh <- result{j.class, n, err}
			}
		}()
	}
	go func() {
		defer close(jobCh)
		for _, j := range ordered {
			select {
			case jobCh <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(resCh)
	}()

	var firstErr error
	for res := range resCh {
		if res.err != nil {
			if firstErr == nil {
				firstErr = res.err
				cancel()
			}
			continue
		}
		sum.Counts[res.class]++
		sum.Files++
		sum.Bytes += res.bytes
		if opts.Progress != nil && firstErr == nil {
			opts.Progress(sum.Files, len(ordered))
		}
	}
	if firstErr != nil {
		return sum, firstErr
	}
	if sum.Files < len(ordered) {
		if err := context.Cause(ctx); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

func writeOne(c *canvas, buf *bytes.Buffer, j job, opts Options) (int64, error) {
	newScene(j.class, j.index, opts.Width, opts.Height, opts.Seed).render(c)
	buf.Reset()
	if err := jpeg.Encode(buf, c.img, &jpeg.Options{Quality: opts.Quality}); err != nil {
		return 0, fmt.Errorf("demodata: encode %s/%d: %w", j.class, j.index, err)
	}
	name := filepath.Join(opts.Out, j.class, FileName(j.class, j.index))
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return 0, fmt.Errorf("demodata: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("demodata: %w", err)
	}
	return int64(buf.Len()), nil
}
