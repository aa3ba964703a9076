package classifier

import (
	"testing"

	"eyeflow/inference"
	"eyeflow/internal/testenv"
)

// initORT loads ONNX Runtime once per test binary; a missing library fails.
func initORT(t testing.TB) {
	t.Helper()
	if err := inference.InitRuntime(testenv.ORTLibrary(t)); err != nil {
		t.Fatalf("init onnxruntime: %v", err)
	}
}
