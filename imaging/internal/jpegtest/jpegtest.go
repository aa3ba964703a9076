//go:build cgo

// Package jpegtest encodes the JPEG variants that image/jpeg cannot write
// (progressive, CMYK and YCCK with an Adobe marker) with libjpeg, so the
// imaging tests can build their edge-case corpus in memory instead of
// checking binary files in. Test-only; nothing in production imports it.
package jpegtest

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <jpeglib.h>

typedef struct { struct jpeg_error_mgr pub; jmp_buf jb; char msg[JMSG_LENGTH_MAX]; } jt_err;

static void jt_error_exit(j_common_ptr c) {
	jt_err *e = (jt_err *)c->err;
	(*c->err->format_message)(c, e->msg);
	longjmp(e->jb, 1);
}

// jt_encode compresses w x h pixels of `comps` interleaved samples.
// in_cs/jpeg_cs are J_COLOR_SPACE values; *out is malloc'ed by libjpeg.
static int jt_encode(const unsigned char *pix, int w, int h, int comps, int in_cs, int jpeg_cs,
                     int quality, int progressive, unsigned char **out, unsigned long *outlen, char *msg) {
	struct jpeg_compress_struct c;
	jt_err err;
	c.err = jpeg_std_error(&err.pub);
	err.pub.error_exit = jt_error_exit;
	*out = NULL; *outlen = 0;
	if (setjmp(err.jb)) {
		snprintf(msg, JMSG_LENGTH_MAX, "%s", err.msg);
		jpeg_destroy_compress(&c);
		return -1;
	}
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, out, outlen);
	c.image_width = w; c.image_height = h;
	c.input_components = comps;
	c.in_color_space = (J_COLOR_SPACE)in_cs;
	jpeg_set_defaults(&c);
	jpeg_set_colorspace(&c, (J_COLOR_SPACE)jpeg_cs); // CMYK/YCCK also writes the Adobe marker
	jpeg_set_quality(&c, quality, TRUE);
	if (progressive) jpeg_simple_progression(&c);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * comps);
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	return 0;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// ColorSpace selects the encoded colour space.
type ColorSpace int

const (
	Gray  ColorSpace = iota // 1 component
	YCbCr                   // RGB input, the usual JPEG
	CMYK                    // 4 components stored as is (Adobe, inverted by convention)
	YCCK                    // 4 components, Adobe transform 2
)

// Encode compresses pix (1 byte per sample, interleaved: 1 sample per pixel
// for Gray, 3 (RGB) for YCbCr, 4 (Adobe-inverted CMYK) for CMYK/YCCK).
func Encode(pix []byte, w, h int, cs ColorSpace, quality int, progressive bool) ([]byte, error) {
	var comps, in, out C.int
	switch cs {
	case Gray:
		comps, in, out = 1, C.JCS_GRAYSCALE, C.JCS_GRAYSCALE
	case YCbCr:
		comps, in, out = 3, C.JCS_RGB, C.JCS_YCbCr
	case CMYK:
		comps, in, out = 4, C.JCS_CMYK, C.JCS_CMYK
	case YCCK:
		comps, in, out = 4, C.JCS_CMYK, C.JCS_YCCK
	default:
		return nil, errors.New("jpegtest: bad colour space")
	}
	if w <= 0 || h <= 0 || len(pix) != w*h*int(comps) {
		return nil, errors.New("jpegtest: pixel buffer does not match size")
	}
	cpix := C.CBytes(pix)
	defer C.free(cpix)
	var buf *C.uchar
	var n C.ulong
	msg := (*C.char)(C.calloc(C.JMSG_LENGTH_MAX, 1))
	defer C.free(unsafe.Pointer(msg))
	prog := C.int(0)
	if progressive {
		prog = 1
	}
	if C.jt_encode((*C.uchar)(cpix), C.int(w), C.int(h), comps, in, out, C.int(quality), prog, &buf, &n, msg) != 0 {
		if buf != nil {
			C.free(unsafe.Pointer(buf))
		}
		return nil, errors.New("jpegtest: " + C.GoString(msg))
	}
	defer C.free(unsafe.Pointer(buf))
	return C.GoBytes(unsafe.Pointer(buf), C.int(n)), nil
}
