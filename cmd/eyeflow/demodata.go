package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"eyeflow/demodata"
)

func runDemoData(ctx context.Context, args []string, out, errOut io.Writer) error {
	var o demodata.Options
	var seed int64
	var shift, answers string
	fs := newFlagSet("demo-data", "", "Writes a deterministic, labelled synthetic fundus data set (15 classes, imbalanced) in ImageFolder\n"+
		"layout: <out>/<class>/<class>_NNNN.jpg. Nothing is downloaded.", out, errOut)
	fs.stringVar(&o.Out, "out", "", "output directory")
	fs.require("out")
	fs.intVar(&o.Total, "total", demodata.DefaultTotal, "number of images")
	fs.intVar(&o.Width, "width", demodata.DefaultWidth, "image width")
	fs.intVar(&o.Height, "height", demodata.DefaultHeight, "image height")
	fs.intVar(&o.Quality, "quality", demodata.DefaultQuality, "JPEG quality 1..100")
	fs.int64Var(&seed, "seed", 1, "random seed: the same seed writes the same bytes")
	fs.stringVar(&shift, "shift", "", "write an unlabelled shifted batch instead, flat in --out: "+strings.Join(demodata.Shifts(), ", ")+
		" (underexposed camera, camera out of focus, a different class mix)")
	fs.stringVar(&answers, "answers", "", "with --shift: where the answer key (file name -> class) goes, for eyeflow demo-annotate (default <out>.answers.json)")
	if err := fs.parse(args, func() error {
		if seed < 0 {
			return errors.New("--seed must not be negative")
		}
		return nil
	}); err != nil {
		return err
	}
	o.Seed = uint64(seed)
	start := time.Now()
	if shift != "" {
		key, err := demodata.GenerateShift(ctx, o, shift)
		if err != nil {
			return err
		}
		if answers == "" {
			answers = strings.TrimSuffix(o.Out, "/") + ".answers.json"
		}
		b, err := json.MarshalIndent(key, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(answers, b, 0o644); err != nil {
			return fmt.Errorf("demo-data: answer key: %w", err)
		}
		fmt.Fprintf(out, "wrote %d unlabelled %s images to %s in %s; answer key %s\n", len(key), shift, o.Out, time.Since(start).Round(time.Millisecond), answers)
		return nil
	}
	sum, err := demodata.Generate(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %d images (%s) in 15 classes to %s in %s\n", sum.Files, humanBytes(sum.Bytes), o.Out, time.Since(start).Round(time.Millisecond))
	return nil
}
