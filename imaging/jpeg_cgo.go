//go:build cgo

package imaging

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

// Every entry point below that calls into libjpeg sets its own setjmp: the
// error manager longjmps back to it instead of calling exit(), and no longjmp
// ever crosses a Go frame.
typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
	int code;
} ef_err;

typedef struct {
	struct jpeg_decompress_struct d;
	ef_err err;
	JSAMPARRAY rows;     // row pointers into buf
	unsigned char *buf;  // chunk of decoded rows, C memory so Go can read it freely
	int chunk;           // rows per chunk
} ef_dec;

static void ef_error_exit(j_common_ptr c) {
	ef_err *e = (ef_err *)c->err;
	e->code = c->err->msg_code;
	(*c->err->format_message)(c, e->msg);
	longjmp(e->jb, 1);
}

// Warnings about truncated or corrupt entropy data mean the pixels are
// garbage (libjpeg pads with grey); for us that is bad input, so promote
// them to errors. Harmless warnings (extraneous bytes, unknown JFIF
// revision, odd Adobe transform) are ignored as every other decoder does.
static void ef_emit_message(j_common_ptr c, int level) {
	if (level >= 0) return; // trace messages
	switch (c->err->msg_code) {
	case JWRN_JPEG_EOF:
	case JWRN_HIT_MARKER:
	case JWRN_MUST_RESYNC:
	case JWRN_HUFF_BAD_CODE:
	case JWRN_ARITH_BAD_CODE:
	case JWRN_BOGUS_PROGRESSION:
	case JWRN_NOT_SEQUENTIAL:
		ef_error_exit(c);
	}
	c->err->num_warnings++;
}

static ef_dec *ef_new(void) {
	ef_dec *h = (ef_dec *)calloc(1, sizeof(ef_dec));
	if (!h) return NULL;
	h->d.err = jpeg_std_error(&h->err.pub);
	h->err.pub.error_exit = ef_error_exit;
	h->err.pub.emit_message = ef_emit_message;
	return h;
}

static void ef_free(ef_dec *h) {
	if (!h) return;
	jpeg_destroy_decompress(&h->d); // safe on a never-created struct: mem is NULL
	free(h->rows);
	free(h->buf);
	free(h);
}

// ef_header reads the markers up to the first SOS. data must stay valid (and
// unmoved) until ef_free.
static int ef_header(ef_dec *h, const unsigned char *data, unsigned long len) {
	if (setjmp(h->err.jb)) return -1;
	jpeg_create_decompress(&h->d);
	jpeg_mem_src(&h->d, data, len);
	jpeg_save_markers(&h->d, JPEG_APP0 + 1, 0xFFFF);
	jpeg_read_header(&h->d, TRUE);
	return 0;
}

static int ef_width(ef_dec *h) { return (int)h->d.image_width; }
static int ef_height(ef_dec *h) { return (int)h->d.image_height; }
static int ef_colorspace(ef_dec *h) { return (int)h->d.jpeg_color_space; }
static int ef_adobe(ef_dec *h) { return h->d.saw_Adobe_marker ? 1 : 0; }

// ef_exif returns the first APP1 segment that holds EXIF, or NULL.
static const unsigned char *ef_exif(ef_dec *h, unsigned int *len) {
	jpeg_saved_marker_ptr m;
	for (m = h->d.marker_list; m; m = m->next) {
		if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
		    memcmp(m->data, "Exif\0\0", 6) == 0) {
			*len = m->data_length;
			return m->data;
		}
	}
	*len = 0;
	return NULL;
}

// ef_start configures DCT-domain downscaling by 1/denom with the same decoder
// settings as Pillow (ISLOW IDCT, fancy upsampling) and starts decoding.
static int ef_start(ef_dec *h, int denom, int cmyk, int *ow, int *oh, int *oc) {
	if (setjmp(h->err.jb)) return -1;
	h->d.scale_num = 1;
	h->d.scale_denom = denom;
	h->d.dct_method = JDCT_ISLOW;
	h->d.do_fancy_upsampling = TRUE;
	h->d.do_block_smoothing = TRUE;
	h->d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
	jpeg_start_decompress(&h->d);
	*ow = h->d.output_width;
	*oh = h->d.output_height;
	*oc = h->d.output_components;
	h->chunk = 16;
	size_t stride = (size_t)h->d.output_width * h->d.output_components;
	h->buf = (unsigned char *)malloc(stride * h->chunk);
	h->rows = (JSAMPARRAY)malloc(sizeof(JSAMPROW) * h->chunk);
	if (!h->buf || !h->rows) {
		snprintf(h->err.msg, sizeof h->err.msg, "out of memory");
		h->err.code = JERR_OUT_OF_MEMORY;
		return -1;
	}
	for (int i = 0; i < h->chunk; i++) h->rows[i] = h->buf + stride * i;
	return 0;
}

// ef_read decodes up to one chunk of rows into buf and returns how many.
static int ef_read(ef_dec *h) {
	if (setjmp(h->err.jb)) return -1;
	int got = 0;
	while (got < h->chunk && h->d.output_scanline < h->d.output_height) {
		got += jpeg_read_scanlines(&h->d, h->rows + got, h->chunk - got);
	}
	return got;
}

static const char *ef_msg(ef_dec *h) { return h->err.msg; }
static int ef_code(ef_dec *h) { return h->err.code; }
static unsigned char *ef_buf(ef_dec *h) { return h->buf; }
static int ef_chunk(ef_dec *h) { return h->chunk; }
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// jpegDecoder wraps one libjpeg decompressor. The input slice is pinned for
// the decoder's lifetime because libjpeg keeps a pointer to it between calls.
type jpegDecoder struct {
	h      *C.ef_dec
	pin    runtime.Pinner
	width  int
	height int
	cmyk   bool
	adobe  bool
}

func (d *jpegDecoder) err() error {
	code := int(C.ef_code(d.h))
	msg := C.GoString(C.ef_msg(d.h))
	kind := ErrCorrupt
	switch code {
	case C.JWRN_JPEG_EOF:
		msg = "premature end of data"
	case C.JERR_IMAGE_TOO_BIG, C.JERR_WIDTH_OVERFLOW:
		kind = ErrTooLarge
	case C.JERR_BAD_PRECISION, C.JERR_CONVERSION_NOTIMPL, C.JERR_NOT_COMPILED,
		C.JERR_ARITH_NOTIMPL, C.JERR_NOTIMPL:
		kind = ErrUnsupportedImage // a JPEG, in a coding libjpeg was built without
	case C.JERR_OUT_OF_MEMORY:
		// libjpeg's allocator refused: the image needs more memory than
		// allowed, which is this package's "too large".
		return fmt.Errorf("decode jpeg: out of memory: %w", ErrTooLarge)
	}
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + msg[1:]
	}
	return fmt.Errorf("decode jpeg: %s: %w", msg, kind)
}

func (d *jpegDecoder) close() {
	if d.h != nil {
		C.ef_free(d.h)
		d.h = nil
	}
	d.pin.Unpin()
}

// openJPEG reads the header only: dimensions, colour space, EXIF orientation.
func openJPEG(data []byte) (*jpegDecoder, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("decode jpeg: empty input: %w", ErrCorrupt)
	}
	d := &jpegDecoder{h: C.ef_new()}
	if d.h == nil {
		return nil, fmt.Errorf("decode jpeg: out of memory: %w", ErrTooLarge)
	}
	d.pin.Pin(&data[0])
	if C.ef_header(d.h, (*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data))) != 0 {
		err := d.err()
		d.close()
		return nil, err
	}
	d.width, d.height = int(C.ef_width(d.h)), int(C.ef_height(d.h))
	switch C.ef_colorspace(d.h) {
	case C.JCS_GRAYSCALE, C.JCS_YCbCr, C.JCS_RGB:
	case C.JCS_CMYK, C.JCS_YCCK:
		d.cmyk = true
		d.adobe = C.ef_adobe(d.h) != 0
	default:
		d.close()
		return nil, fmt.Errorf("decode jpeg: unknown colour space: %w", ErrUnsupportedImage)
	}
	return d, nil
}

func (d *jpegDecoder) orientation() int {
	var n C.uint
	p := C.ef_exif(d.h, &n)
	if p == nil {
		return 1
	}
	return exifOrientation(unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
}

// decode runs the scaled decode and hands each RGB row (3*w bytes, valid only
// during the call) to emit; emit returns false to stop early (rows past the
// last one the resampler needs).
func (d *jpegDecoder) decode(denom int, emit func(y int, row []byte) bool) (w, h int, err error) {
	var ow, oh, oc C.int
	cm := C.int(0)
	if d.cmyk {
		cm = 1
	}
	if C.ef_start(d.h, C.int(denom), cm, &ow, &oh, &oc) != 0 {
		return 0, 0, d.err()
	}
	w, h = int(ow), int(oh)
	comps := int(oc)
	stride := w * comps
	chunk := int(C.ef_chunk(d.h))
	buf := unsafe.Slice((*byte)(unsafe.Pointer(C.ef_buf(d.h))), stride*chunk)
	var rgb []byte
	var rgbp *[]byte
	if d.cmyk {
		rgbp = getBytes(3 * w)
		defer putBytes(rgbp)
		rgb = *rgbp
	}
	for y := 0; y < h; {
		n := int(C.ef_read(d.h))
		if n < 0 {
			return 0, 0, d.err()
		}
		if n == 0 {
			return 0, 0, fmt.Errorf("decode jpeg: decoder made no progress: %w", ErrCorrupt)
		}
		for i := 0; i < n; i++ {
			row := buf[i*stride : (i+1)*stride]
			if d.cmyk {
				cmykToRGB(rgb, row, d.adobe)
				row = rgb
			}
			if !emit(y, row) {
				return w, h, nil
			}
			y++
		}
	}
	return w, h, nil
}

// cmykToRGB matches Pillow: Adobe files store inverted CMYK (PIL rawmode
// "CMYK;I"), and Pillow's cmyk2rgb computes (255-c)*(255-k)/255 with its
// MULDIV255 rounding.
func cmykToRGB(dst, src []byte, adobe bool) {
	n := len(src) / 4
	dst = dst[:3*n]
	var inv byte
	if adobe {
		inv = 0xff
	}
	for i := 0; i < n; i++ {
		s := src[4*i : 4*i+4 : 4*i+4]
		nk := int(255 - (s[3] ^ inv))
		d := dst[3*i : 3*i+3 : 3*i+3]
		d[0] = byte(nk - muldiv255(int(s[0]^inv), nk))
		d[1] = byte(nk - muldiv255(int(s[1]^inv), nk))
		d[2] = byte(nk - muldiv255(int(s[2]^inv), nk))
	}
}

// decodeJPEGResized is the hot path: header, scaled decode streamed row by
// row into the resampler (no full-size buffer) when no rotation is needed.
func decodeJPEGResized(data []byte, opts Options) (*RGB8, int, error) {
	d, err := openJPEG(data)
	if err != nil {
		return nil, 1, err
	}
	defer d.close()
	// Decode checked the size Sniff read; check libjpeg's own reading of
	// the header too, so the pixel limit holds even if the two marker
	// walks ever disagree on which frame header counts.
	if err := checkSize(FormatJPEG, d.width, d.height, opts.MaxPixels); err != nil {
		return nil, 1, err
	}
	orient := d.orientation()
	tw, th := opts.Width, opts.Height
	if orient >= 5 { // transposing orientations: stored width becomes height
		tw, th = th, tw
	}
	denom := jpegScaleDenom(d.width, d.height, tw, th)
	if orient == 1 {
		var r *resizer
		_, _, err = d.decode(denom, func(y int, row []byte) bool {
			if r == nil {
				r = newResizer(len(row)/3, scaledDim(d.height, denom), opts.Width, opts.Height)
			}
			r.row(y, row)
			return y+1 < r.yLast
		})
		if err != nil {
			if r != nil {
				putBytes(r.tmp)
			}
			return nil, orient, err
		}
		return r.finish(), orient, nil
	}
	var img *RGB8
	_, _, err = d.decode(denom, func(y int, row []byte) bool {
		if img == nil {
			img = NewRGB8(len(row)/3, scaledDim(d.height, denom))
		}
		copy(img.Pix[y*len(row):], row)
		return true
	})
	if err != nil {
		return nil, orient, err
	}
	return Resize(Orient(img, orient), opts.Width, opts.Height), orient, nil
}
