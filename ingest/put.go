package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/security/objkey"
)

// PutOptions configure Put.
type PutOptions struct {
	Bucket string
	// Class puts single files under <Class>/; folders take the class from
	// their ImageFolder layout (<class>/<file>).
	Class string
	// Prefix is prepended to every key.
	Prefix      string
	Concurrency int
	// Progress is called after each file (done, total, bytes so far).
	Progress func(done, total int, bytes int64)
}

// PutFile is one file to upload and the key it gets.
type PutFile struct {
	Path string
	Key  string
	Size int64
}

// PutSummary counts an upload run.
type PutSummary struct {
	Files    int
	Bytes    int64
	Failed   int
	Errors   []error
	Duration time.Duration
}

// Plan lists the files Put would upload, with their keys, in key order.
// A folder argument is an ImageFolder root: DIR/<class>/<file> becomes
// <class>/<file>; hidden files and folders are left out.
//
// Keys follow the object-key policy (security/objkey): a file whose key
// would be refused downstream (control characters, invalid UTF-8, over 1024
// bytes) fails the plan with its path, before anything is uploaded, and a
// class or prefix with a dot segment or separator cannot move keys out of
// their folder.
func Plan(paths []string, opts PutOptions) ([]PutFile, error) {
	if opts.Class != "" {
		if err := objkey.Segment(opts.Class); err != nil {
			return nil, fmt.Errorf("put: class: %w", err)
		}
	}
	// "/in/" means the folder in/: path.Join would keep the leading slash
	// and make absolute keys.
	opts.Prefix = strings.Trim(opts.Prefix, "/")
	if opts.Prefix != "" {
		if err := objkey.Check(opts.Prefix); err != nil {
			return nil, fmt.Errorf("put: prefix: %w", err)
		}
	}
	var files []PutFile
	add := func(f PutFile) error {
		if err := objkey.Under(opts.Prefix, f.Key); err != nil {
			return fmt.Errorf("put %s: %w", f.Path, err)
		}
		files = append(files, f)
		return nil
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("put %s: %w", p, err)
		}
		if !st.IsDir() {
			key := filepath.Base(p)
			if opts.Class != "" {
				key = opts.Class + "/" + key
			}
			if err := add(PutFile{Path: p, Key: path.Join(opts.Prefix, key), Size: st.Size()}); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(d.Name(), ".") && fp != p {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(p, fp)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return add(PutFile{Path: fp, Key: path.Join(opts.Prefix, filepath.ToSlash(rel)), Size: info.Size()})
		})
		if err != nil {
			return nil, fmt.Errorf("put %s: %w", p, err)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Key < files[j].Key })
	return files, nil
}

// Put uploads the planned files into the bucket, streaming each one. It
// uploads every file it can and reports the ones that failed.
func Put(ctx context.Context, store objstore.Store, files []PutFile, opts PutOptions) (PutSummary, error) {
	if opts.Bucket == "" {
		opts.Bucket = objstore.BucketRaw
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = machine.Detect().IOConcurrency()
	}
	start := time.Now()
	var (
		sum   PutSummary
		mu    sync.Mutex
		done  atomic.Int64
		bytes atomic.Int64
		wg    sync.WaitGroup
	)
	work := make(chan PutFile)
	for range opts.Concurrency {
		wg.Go(func() {
			for f := range work {
				err := putOne(ctx, store, opts.Bucket, f)
				n := done.Add(1)
				if err == nil {
					bytes.Add(f.Size)
				}
				mu.Lock()
				if err != nil {
					sum.Failed++
					sum.Errors = append(sum.Errors, err)
				} else {
					sum.Files++
					sum.Bytes += f.Size
				}
				// Under the lock: progress calls come one at a time.
				if opts.Progress != nil {
					opts.Progress(int(n), len(files), bytes.Load())
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, f := range files {
		select {
		case work <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	sum.Duration = time.Since(start)
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	if sum.Failed > 0 {
		return sum, fmt.Errorf("%d of %d files failed: %w", sum.Failed, len(files), errors.Join(sum.Errors...))
	}
	return sum, nil
}

func putOne(ctx context.Context, store objstore.Store, bucket string, f PutFile) error {
	fh, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("put %s: %w", f.Path, err)
	}
	defer fh.Close()
	ct := mime.TypeByExtension(strings.ToLower(filepath.Ext(f.Path)))
	if ct == "" {
		ct = "application/octet-stream"
	}
	if _, err := store.Put(ctx, bucket, f.Key, io.Reader(fh), f.Size, objstore.PutOptions{ContentType: ct}); err != nil {
		return fmt.Errorf("put %s as %s/%s: %w", f.Path, bucket, f.Key, err)
	}
	return nil
}
