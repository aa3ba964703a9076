package onnxpb

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
)

// TestGenerated makes drift visible: onnx.proto and onnx.pb.go must be the
// files scripts/gen-onnx-proto.sh wrote, whose hashes it recorded in sums.go.
// An edit of the schema without regenerating, or of the generated code by
// hand, fails here.
func TestGenerated(t *testing.T) {
	for file, want := range map[string]string{"onnx.proto": protoSHA256, "onnx.pb.go": pbGoSHA256} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s has SHA-256 %x, sums.go records %s: it changed since scripts/gen-onnx-proto.sh generated it; "+
				"do not edit onnx.proto or onnx.pb.go by hand, rerun the script", file, sum, want)
		}
	}
	// The schema is ONNX 1.12's (IR version 8), which package onnx's
	// writer targets.
	if v := Version_IR_VERSION; v != 8 {
		t.Errorf("onnx.proto's IR_VERSION is %d, want 8 (ONNX 1.12)", v)
	}
}
