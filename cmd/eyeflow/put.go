package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"eyeflow/ingest"
	"eyeflow/objstore"

	"github.com/mattn/go-isatty"
)

func runPut(ctx context.Context, args []string, out, errOut io.Writer) error {
	var c storeClient
	var o ingest.PutOptions
	fs := newFlagSet("put", "PATH...", "Uploads files, or folders in ImageFolder layout (<class>/<file>: the class comes from the folder),\n"+
		"into the raw bucket. With `eyeflow up` running, every uploaded object becomes an eye.uploads event.", out, errOut)
	c.register(fs)
	fs.stringVar(&o.Bucket, "bucket", objstore.BucketRaw, "destination bucket")
	fs.stringVar(&o.Class, "class", "", "put single files under <class>/")
	fs.stringVar(&o.Prefix, "prefix", "", "prefix for every key")
	fs.intVar(&o.Concurrency, "concurrency", 0, "uploads at once (0: two per core, 4 to 64)")
	if err := fs.parse(args, c.validate); err != nil {
		return err
	}
	files, err := ingest.Plan(fs.Args(), o)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("nothing to upload")
	}
	store, closeStore, err := c.open(ctx, "put", errOut)
	if err != nil {
		return err
	}
	defer closeStore()
	var total int64
	for _, f := range files {
		total += f.Size
	}
	start := time.Now()
	if f, ok := errOut.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		o.Progress = func(done, n int, bytes int64) {
			const width = 30
			bar := strings.Repeat("#", done*width/n) + strings.Repeat(".", width-done*width/n)
			rate := float64(done) / time.Since(start).Seconds()
			fmt.Fprintf(errOut, "\r[%s] %d/%d files  %s/%s  %.1f files/s ", bar, done, n, humanBytes(bytes), humanBytes(total), rate)
			if done == n {
				fmt.Fprintln(errOut)
			}
		}
	}
	sum, err := ingest.Put(ctx, store, files, o)
	fmt.Fprintf(out, "uploaded %d %s (%s) to %s in %s, %.1f files/s; %d failed\n",
		sum.Files, plural2(sum.Files, "file", "files"), humanBytes(sum.Bytes), o.Bucket, sum.Duration.Round(time.Millisecond),
		float64(sum.Files)/max(sum.Duration.Seconds(), 1e-9), sum.Failed)
	return err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
