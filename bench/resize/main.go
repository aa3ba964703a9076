// Command resize is eyeflow's side of bench/resize/run.sh: it decodes and
// resizes JPEGs to 224x224 with package imaging and writes PNGs, like
// `vipsthumbnail --size 224x224! -o DIR/%s.png`, so the two can be timed on
// the same files. With -compare it instead prints the parity (MAE / max abs
// error over all pixels and channels) of two directories of 224x224 PNGs.
//
//	resize -o OUTDIR FILE...
//	resize -compare REFDIR GOTDIR NAME...   (compares REFDIR/NAME.png with GOTDIR/NAME.png)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"strings"

	"eyeflow/imaging"
)

func main() {
	out := flag.String("o", "", "output directory for NAME.png files")
	compare := flag.Bool("compare", false, "compare REFDIR GOTDIR NAME...")
	flag.Parse()
	if *compare {
		if err := runCompare(flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "resize:", err)
			os.Exit(1)
		}
		return
	}
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: resize -o OUTDIR FILE... | resize -compare REFDIR GOTDIR NAME...")
		os.Exit(2)
	}
	opts := imaging.DefaultOptions()
	for _, f := range flag.Args() {
		if err := one(f, *out, opts); err != nil {
			fmt.Fprintln(os.Stderr, "resize:", err)
			os.Exit(1)
		}
	}
}

// one is the per-file work that is timed: read, decode+resize, encode, write.
func one(path, outDir string, opts imaging.Options) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	res, err := imaging.Decode(data, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	f, err := os.Create(filepath.Join(outDir, name+".png"))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	if err := imaging.EncodePNG(w, res.RGB, res.Width, res.Height); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadRGBA(path string) (*image.RGBA, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Bounds(), img, img.Bounds().Min, draw.Src)
	return rgba, nil
}

func runCompare(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: -compare REFDIR GOTDIR NAME...")
	}
	var totSum, totN, totMax int
	for _, name := range args[2:] {
		ref, err := loadRGBA(filepath.Join(args[0], name+".png"))
		if err != nil {
			return err
		}
		got, err := loadRGBA(filepath.Join(args[1], name+".png"))
		if err != nil {
			return err
		}
		if ref.Bounds() != got.Bounds() {
			return fmt.Errorf("%s: size %v vs %v", name, ref.Bounds(), got.Bounds())
		}
		sum, n, mx := 0, 0, 0
		for i := range ref.Pix {
			if i%4 == 3 {
				continue // alpha
			}
			d := int(ref.Pix[i]) - int(got.Pix[i])
			if d < 0 {
				d = -d
			}
			sum += d
			n++
			mx = max(mx, d)
		}
		fmt.Printf("  %-28s MAE %.3f  max %d\n", name, float64(sum)/float64(n), mx)
		totSum, totN, totMax = totSum+sum, totN+n, max(totMax, mx)
	}
	fmt.Printf("  %-28s MAE %.3f  max %d\n", "ALL", float64(totSum)/float64(totN), totMax)
	return nil
}
