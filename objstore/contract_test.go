package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"eyeflow/objstore"
)

// testContract runs the behaviour every Store must have. It uses the buckets
// raw and processed (created here) and a bucket that never exists.
func testContract(t *testing.T, s objstore.Store) {
	ctx := testContext(t)
	for _, b := range []string{objstore.BucketRaw, objstore.BucketProcessed} {
		if err := s.EnsureBucket(ctx, b); err != nil {
			t.Fatalf("EnsureBucket(%s): %v", b, err)
		}
	}
	t.Run("EnsureBucketIdempotent", func(t *testing.T) { testEnsureBucket(t, s) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, s) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, s) })
	t.Run("ShortReader", func(t *testing.T) { testShortReader(t, s) })
	t.Run("Stat", func(t *testing.T) { testStat(t, s) })
	t.Run("List", func(t *testing.T) { testList(t, s) })
	t.Run("Copy", func(t *testing.T) { testCopy(t, s) })
	t.Run("OddKeys", func(t *testing.T) { testOddKeys(t, s) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, s) })
}

const missingBucket = "no-such-bucket"

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// unsized hides every method but Read, so no backend can learn the length.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func put(t *testing.T, s objstore.Store, bucket, key string, data []byte, opts objstore.PutOptions) objstore.Info {
	t.Helper()
	info, err := s.Put(testContext(t), bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatalf("Put(%s/%s): %v", bucket, key, err)
	}
	return info
}

// get reads an object and checks that it holds want.
func get(t *testing.T, s objstore.Store, bucket, key string, want []byte) objstore.Info {
	t.Helper()
	rc, info, err := s.Get(testContext(t), bucket, key)
	if err != nil {
		t.Fatalf("Get(%s/%s): %v", bucket, key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s/%s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			bucket, key, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
	if info.Size != int64(len(want)) || info.Key != key || info.Bucket != bucket {
		t.Errorf("Get(%s/%s) info = %+v, want that bucket, key and size %d", bucket, key, info, len(want))
	}
	return info
}

func testEnsureBucket(t *testing.T, s objstore.Store) {
	ctx := testContext(t)
	for i := range 3 {
		for _, b := range []string{objstore.BucketRaw, objstore.BucketLabeling} {
			if err := s.EnsureBucket(ctx, b); err != nil {
				t.Fatalf("EnsureBucket(%s) call %d: %v", b, i+1, err)
			}
		}
	}
	// Existing objects survive a repeated EnsureBucket.
	data := []byte("kept")
	put(t, s, objstore.BucketLabeling, "ensure/kept.txt", data, objstore.PutOptions{})
	if err := s.EnsureBucket(ctx, objstore.BucketLabeling); err != nil {
		t.Fatal(err)
	}
	get(t, s, objstore.BucketLabeling, "ensure/kept.txt", data)
}

func testRoundTrip(t *testing.T, s objstore.Store) {
	tests := []struct {
		name    string
		size    int
		unknown bool // put with size -1 from a reader of unknown length
	}{
		{"empty", 0, false},
		{"one byte", 1, false},
		{"multi-megabyte", 5<<20 + 123, false},
		{"empty unknown size", 0, true},
		{"small unknown size", 1000, true},
		// Larger than the S3 test part size (5 MiB): a multipart upload.
		{"multi-megabyte unknown size", 11<<20 + 7, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := randomBytes(uint64(i+1), tt.size)
			key := "roundtrip/" + tt.name + ".bin"
			var r io.Reader = bytes.NewReader(data)
			size := int64(len(data))
			if tt.unknown {
				r, size = unsized{r}, -1
			}
			info, err := s.Put(testContext(t), objstore.BucketRaw, key, r, size, objstore.PutOptions{ContentType: "application/octet-stream"})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.Size != int64(len(data)) || info.Key != key || info.Bucket != objstore.BucketRaw || info.ETag == "" {
				t.Errorf("Put info = %+v, want size %d, key, bucket and an ETag", info, len(data))
			}
			got := get(t, s, objstore.BucketRaw, key, data)
			if got.ETag != info.ETag {
				t.Errorf("Get ETag %q, Put ETag %q", got.ETag, info.ETag)
			}
		})
	}
}

func testOverwrite(t *testing.T, s objstore.Store) {
	const key = "overwrite/scan.jpg"
	first := put(t, s, objstore.BucketRaw, key, []byte("first version"), objstore.PutOptions{Metadata: map[string]string{"patient-id": "a"}})
	second := put(t, s, objstore.BucketRaw, key, []byte("second, longer version"), objstore.PutOptions{})
	get(t, s, objstore.BucketRaw, key, []byte("second, longer version"))
	if first.ETag == second.ETag {
		t.Errorf("ETag unchanged by new content: %q", first.ETag)
	}
	if first.VersionID != "" && first.VersionID == second.VersionID {
		t.Errorf("VersionID unchanged by overwrite: %q", first.VersionID)
	}
	st, err := s.Stat(testContext(t), objstore.BucketRaw, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Metadata) != 0 {
		t.Errorf("metadata of the first version survived: %v", st.Metadata)
	}
}

// A reader shorter than the declared size fails the put and leaves the old
// object in place.
func testShortReader(t *testing.T, s objstore.Store) {
	const key = "short/scan.jpg"
	old := []byte("the old content")
	put(t, s, objstore.BucketRaw, key, old, objstore.PutOptions{})
	_, err := s.Put(testContext(t), objstore.BucketRaw, key, bytes.NewReader(make([]byte, 10)), 100, objstore.PutOptions{})
	if err == nil {
		t.Fatal("Put of 10 bytes declared as 100 succeeded")
	}
	get(t, s, objstore.BucketRaw, key, old)
}

func testStat(t *testing.T, s objstore.Store) {
	ctx := testContext(t)
	a := randomBytes(100, 64<<10)
	b := slices.Clone(a)
	b[len(b)-1] ^= 1
	opts := objstore.PutOptions{
		ContentType: "image/jpeg",
		// Mixed case on purpose: keys come back lower-case.
		Metadata: map[string]string{"Patient-ID": "P-0042", "eye": "left"},
	}
	putA1 := put(t, s, objstore.BucketRaw, "stat/a1.jpg", a, opts)
	put(t, s, objstore.BucketRaw, "stat/a2.jpg", a, opts)
	put(t, s, objstore.BucketRaw, "stat/b.jpg", b, opts)

	stat := func(key string) objstore.Info {
		t.Helper()
		info, err := s.Stat(ctx, objstore.BucketRaw, key)
		if err != nil {
			t.Fatalf("Stat(%s): %v", key, err)
		}
		return info
	}
	a1, a2, bi := stat("stat/a1.jpg"), stat("stat/a2.jpg"), stat("stat/b.jpg")

	if a1.Bucket != objstore.BucketRaw || a1.Key != "stat/a1.jpg" || a1.Size != int64(len(a)) {
		t.Errorf("Stat = %+v: wrong bucket, key or size (want %d)", a1, len(a))
	}
	if a1.ContentType != "image/jpeg" {
		t.Errorf("ContentType = %q, want image/jpeg", a1.ContentType)
	}
	wantMeta := map[string]string{"patient-id": "P-0042", "eye": "left"}
	for k, v := range wantMeta {
		if a1.Metadata[k] != v {
			t.Errorf("Metadata[%q] = %q, want %q (all: %v)", k, a1.Metadata[k], v, a1.Metadata)
		}
	}
	if len(a1.Metadata) != len(wantMeta) {
		t.Errorf("Metadata = %v, want exactly %v", a1.Metadata, wantMeta)
	}
	if a1.ETag == "" || a1.ETag != a2.ETag {
		t.Errorf("identical bytes, ETags %q and %q", a1.ETag, a2.ETag)
	}
	if a1.ETag == bi.ETag {
		t.Errorf("different bytes, same ETag %q", a1.ETag)
	}
	if a1.ETag != putA1.ETag {
		t.Errorf("Stat ETag %q, Put ETag %q", a1.ETag, putA1.ETag)
	}
	if d := time.Since(a1.Modified); a1.Modified.IsZero() || d < -time.Minute || d > time.Minute {
		t.Errorf("Modified = %v, want about now", a1.Modified)
	}
	// Get describes the object like Stat does.
	g := get(t, s, objstore.BucketRaw, "stat/a1.jpg", a)
	if g.ETag != a1.ETag || g.ContentType != a1.ContentType || g.Metadata["patient-id"] != "P-0042" {
		t.Errorf("Get info %+v differs from Stat info %+v", g, a1)
	}
}

func keys(t *testing.T, s objstore.Store, bucket, prefix string) []string {
	t.Helper()
	var out []string
	for info, err := range s.List(testContext(t), bucket, prefix) {
		if err != nil {
			t.Fatalf("List(%s, %q): %v", bucket, prefix, err)
		}
		if info.Bucket != bucket || info.Size <= 0 || info.ETag == "" {
			t.Errorf("List info %+v: want bucket %s, a size and an ETag", info, bucket)
		}
		out = append(out, info.Key)
	}
	return out
}

func testList(t *testing.T, s objstore.Store) {
	const bucket = objstore.BucketProcessed
	// Put out of order; listing sorts.
	for _, k := range []string{
		"list/p2/b.jpg", "list/p1/z.jpg", "list/p1/a.jpg", "list/p1/sub/c.jpg",
		"list/p10.jpg", "list/p1 x.jpg", "listing/other.jpg",
	} {
		put(t, s, bucket, k, []byte("data of "+k), objstore.PutOptions{})
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"list/p1/", []string{"list/p1/a.jpg", "list/p1/sub/c.jpg", "list/p1/z.jpg"}},
		{"list/p1", []string{"list/p1 x.jpg", "list/p1/a.jpg", "list/p1/sub/c.jpg", "list/p1/z.jpg", "list/p10.jpg"}},
		{"list/", []string{"list/p1 x.jpg", "list/p1/a.jpg", "list/p1/sub/c.jpg", "list/p1/z.jpg", "list/p10.jpg", "list/p2/b.jpg"}},
		{"list/nothing/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			if got := keys(t, s, bucket, tt.prefix); !slices.Equal(got, tt.want) {
				t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		})
	}
	t.Run("stop early", func(t *testing.T) {
		n := 0
		for _, err := range s.List(testContext(t), bucket, "list/") {
			if err != nil {
				t.Fatal(err)
			}
			n++
			break
		}
		if n != 1 {
			t.Errorf("got %d objects before break, want 1", n)
		}
	})
}

func testCopy(t *testing.T, s objstore.Store) {
	data := randomBytes(200, 300<<10)
	opts := objstore.PutOptions{ContentType: "image/png", Metadata: map[string]string{"patient-id": "P-7"}}
	src := put(t, s, objstore.BucketRaw, "copy/src.png", data, opts)
	tests := []struct {
		name, bucket, key string
	}{
		{"same bucket", objstore.BucketRaw, "copy/dst.png"},
		{"other bucket", objstore.BucketProcessed, "copy/from raw/dst.png"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := s.Copy(testContext(t), objstore.BucketRaw, "copy/src.png", tt.bucket, tt.key)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if info.Bucket != tt.bucket || info.Key != tt.key || info.Size != int64(len(data)) {
				t.Errorf("Copy info = %+v: wrong bucket, key or size", info)
			}
			got := get(t, s, tt.bucket, tt.key, data)
			if got.ContentType != "image/png" || got.Metadata["patient-id"] != "P-7" {
				t.Errorf("copy lost attributes: %+v", got)
			}
			if got.ETag != src.ETag {
				t.Errorf("copy ETag %q, source ETag %q", got.ETag, src.ETag)
			}
		})
	}
	get(t, s, objstore.BucketRaw, "copy/src.png", data) // source untouched
}

func testOddKeys(t *testing.T, s objstore.Store) {
	tests := []string{
		"odd/with space.jpg",
		"odd/a+b.jpg",
		"odd/ünïcødé 眼底.png",
		"odd/nested/deep/folder/x.jpg",
		"odd/mixed + space/%2B=&?#.jpg",
	}
	for i, key := range tests {
		t.Run(key, func(t *testing.T) {
			data := randomBytes(uint64(300+i), 1000+i)
			put(t, s, objstore.BucketRaw, key, data, objstore.PutOptions{Metadata: map[string]string{"patient-id": "p"}})
			get(t, s, objstore.BucketRaw, key, data)
			info, err := s.Stat(testContext(t), objstore.BucketRaw, key)
			if err != nil || info.Key != key {
				t.Fatalf("Stat = %+v, %v", info, err)
			}
			if got := keys(t, s, objstore.BucketRaw, key); !slices.Equal(got, []string{key}) {
				t.Errorf("List(%q) = %q", key, got)
			}
			dst := "odd-copy/" + key
			if _, err := s.Copy(testContext(t), objstore.BucketRaw, key, objstore.BucketProcessed, dst); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			get(t, s, objstore.BucketProcessed, dst, data)
		})
	}
}

func testNotFound(t *testing.T, s objstore.Store) {
	ctx := testContext(t)
	put(t, s, objstore.BucketRaw, "nf/exists.jpg", []byte("x"), objstore.PutOptions{})
	listErr := func(bucket string) error {
		for _, err := range s.List(ctx, bucket, "") {
			if err != nil {
				return err
			}
		}
		return nil
	}
	getErr := func(bucket, key string) error {
		rc, _, err := s.Get(ctx, bucket, key)
		if err == nil {
			rc.Close()
		}
		return err
	}
	statErr := func(bucket, key string) error {
		_, err := s.Stat(ctx, bucket, key)
		return err
	}
	tests := []struct {
		name string
		err  error
	}{
		{"get missing object", getErr(objstore.BucketRaw, "nf/missing.jpg")},
		{"stat missing object", statErr(objstore.BucketRaw, "nf/missing.jpg")},
		{"copy missing object", func() error {
			_, err := s.Copy(ctx, objstore.BucketRaw, "nf/missing.jpg", objstore.BucketRaw, "nf/dst.jpg")
			return err
		}()},
		{"get missing bucket", getErr(missingBucket, "nf/exists.jpg")},
		{"stat missing bucket", statErr(missingBucket, "nf/exists.jpg")},
		{"put missing bucket", func() error {
			_, err := s.Put(ctx, missingBucket, "k", bytes.NewReader([]byte("x")), 1, objstore.PutOptions{})
			return err
		}()},
		{"list missing bucket", listErr(missingBucket)},
		{"copy from missing bucket", func() error {
			_, err := s.Copy(ctx, missingBucket, "nf/exists.jpg", objstore.BucketRaw, "nf/dst.jpg")
			return err
		}()},
		{"copy to missing bucket", func() error {
			_, err := s.Copy(ctx, objstore.BucketRaw, "nf/exists.jpg", missingBucket, "nf/dst.jpg")
			return err
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, objstore.ErrNotFound) {
				t.Errorf("err = %v, want one wrapping ErrNotFound", tt.err)
			}
		})
	}
	if err := listErr(objstore.BucketRaw); err != nil {
		t.Errorf("List of an existing bucket: %v", err)
	}
}
