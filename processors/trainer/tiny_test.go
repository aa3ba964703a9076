package trainer_test

import "eyeflow/onnx"

func onnxTiny(classes int) []byte { return onnx.Tiny(classes, false) }
