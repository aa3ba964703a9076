package trainer_test

import "eyeflow/processors/classifier/onnx"

func onnxTiny(classes int) []byte { return onnx.Tiny(classes, false) }
