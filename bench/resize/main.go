// Command resize is eyeflow's side of bench/resize/run.sh: it decodes and
// resizes JPEGs to 224x224 with package imaging and writes PNGs, like
// `vipsthumbnail --size 224x224! -o DIR/%s.png`, so the two can be timed on
// the same files. With -compare it instead prints the parity (MAE / max abs
// error over all pixels and channels) of two directories of 224x224 PNGs.
//
//	resize -o OUTDIR FILE...                 (the resize stage's PNG: zlib level 1, best speed)
//	resize -level 6 -o OUTDIR FILE...        (zlib level 6, vipsthumbnail's and PIL's default)
//	resize -o "" FILE...                     (decode + resize only, nothing written)
//	resize -compare REFDIR GOTDIR NAME...   (compares REFDIR/NAME.png with GOTDIR/NAME.png)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"

	"eyeflow/imaging"
)

func main() {
	out := flag.String("o", "", "output directory for NAME.png files (empty: decode and resize only)")
	level := flag.Int("level", 1, "PNG zlib level: 1 is the resize stage's (best speed), 6 the zlib default that vipsthumbnail and PIL use")
	compare := flag.Bool("compare", false, "compare REFDIR GOTDIR NAME...")
	flag.Parse()
	if *compare {
		if err := runCompare(flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "resize:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() == 0 || (*level != 1 && *level != 6) {
		fmt.Fprintln(os.Stderr, "usage: resize [-level 1|6] -o OUTDIR FILE... | resize -compare REFDIR GOTDIR NAME...")
		os.Exit(2)
	}
	opts := imaging.DefaultOptions()
	for _, f := range flag.Args() {
		if err := one(f, *out, *level, opts); err != nil {
			fmt.Fprintln(os.Stderr, "resize:", err)
			os.Exit(1)
		}
	}
}

// one is the per-file work that is timed: read, decode+resize, encode, write
// (without outDir, read and decode+resize only).
func one(path, outDir string, level int, opts imaging.Options) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	res, err := imaging.Decode(data, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if outDir == "" {
		return nil
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	f, err := os.Create(filepath.Join(outDir, name+".png"))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	encode := imaging.EncodePNG // the stage's own: best speed
	if level == 6 {
		encode = encodeDefault
	}
	if err := encode(w, res.RGB, res.Width, res.Height); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// encodeDefault writes the PNG at zlib's default level, as vipsthumbnail
// and PIL do by default.
func encodeDefault(w io.Writer, rgb []byte, width, height int) error {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for i, j := 0, 0; i < len(rgb); i, j = i+3, j+4 {
		img.Pix[j], img.Pix[j+1], img.Pix[j+2], img.Pix[j+3] = rgb[i], rgb[i+1], rgb[i+2], 0xff
	}
	return (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(w, img)
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
