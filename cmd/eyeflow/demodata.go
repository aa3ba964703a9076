package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"eyeflow/demodata"
)

func runDemoData(ctx context.Context, args []string, out, errOut io.Writer) error {
	var o demodata.Options
	var seed int64
	fs := newFlagSet("demo-data", "", "Writes a deterministic, labelled synthetic fundus data set (15 classes, imbalanced) in ImageFolder\n"+
		"layout: <out>/<class>/<class>_NNNN.jpg. Nothing is downloaded.", errOut)
	fs.stringVar(&o.Out, "out", "", "output directory (required)")
	fs.intVar(&o.Total, "total", demodata.DefaultTotal, "number of images")
	fs.intVar(&o.Width, "width", demodata.DefaultWidth, "image width")
	fs.intVar(&o.Height, "height", demodata.DefaultHeight, "image height")
	fs.intVar(&o.Quality, "quality", demodata.DefaultQuality, "JPEG quality 1..100")
	fs.int64Var(&seed, "seed", 1, "random seed: the same seed writes the same bytes")
	if err := fs.parse(args); err != nil {
		return err
	}
	if o.Out == "" {
		return errors.New("demo-data: --out is required")
	}
	if seed < 0 {
		return errors.New("demo-data: --seed must not be negative")
	}
	o.Seed = uint64(seed)
	start := time.Now()
	sum, err := demodata.Generate(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %d images (%s) in 15 classes to %s in %s\n", sum.Files, humanBytes(sum.Bytes), o.Out, time.Since(start).Round(time.Millisecond))
	return nil
}
