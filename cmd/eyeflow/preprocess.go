package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"eyeflow/imaging"
	"eyeflow/schemas"
)

func runPreprocess(ctx context.Context, args []string, out, errOut io.Writer) error {
	opts := imaging.DefaultOptions()
	fs := newFlagSet("preprocess", "IN OUT.png", "Decodes and resizes one image with exactly the resize stage's code and writes the 224x224 PNG the\n"+
		"model sees, to compare with a training pipeline. Exits non-zero with the reason on bad input.", out, errOut)
	fs.int64Var(&opts.MaxPixels, "max-pixels", opts.MaxPixels, "refuse images with more pixels than this")
	if err := fs.parse(args, func() error {
		if opts.MaxPixels < 1 {
			return fmt.Errorf("--max-pixels %d: must be at least 1", opts.MaxPixels)
		}
		return nil
	}); err != nil {
		return err
	}
	in, outPath := fs.Arg(0), fs.Arg(1)
	if !strings.EqualFold(filepath.Ext(outPath), ".png") {
		return fs.usageErr("%s: the output is a PNG: name it OUT.png", outPath)
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("preprocess: %w", err)
	}
	if len(data) == 0 {
		return fmt.Errorf("preprocess %s: %s: file is empty", in, schemas.ReasonEmpty)
	}
	res, err := imaging.Decode(data, opts)
	if err != nil {
		return fmt.Errorf("preprocess %s: %w", in, err)
	}
	f, err := os.Create(outPath)
	if err != nil {
		return fmt.Errorf("preprocess: %w", err)
	}
	if err := imaging.EncodePNG(f, res.RGB, res.Width, res.Height); err != nil {
		f.Close()
		return fmt.Errorf("preprocess: write %s: %w", outPath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("preprocess: write %s: %w", outPath, err)
	}
	fmt.Fprintf(out, "%s: %s %dx%d (orientation %d, image id %x) -> %s %dx%d\n",
		in, res.Format, res.SrcWidth, res.SrcHeight, res.Orientation, sha256.Sum256(data), outPath, res.Width, res.Height)
	return nil
}
