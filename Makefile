# The two commands of the README: `make demo` and `make test`.
GO      ?= go
BIN     := bin/eyeflow
PKGS    := ./...

.PHONY: setup build demo test vet fmt-check fuzz bench-resize clean

setup:
	./scripts/setup.sh

build: setup
	$(GO) build -o $(BIN) ./cmd/eyeflow

# Runs the embedded default on a synthetic data set: eyeflow up, eyeflow put, and a summary.
demo: build
	./scripts/demo.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Unit and integration tests under the race detector; the whole-pipeline
# fault tests (e2e/, thousands of images through a three-node cluster) without
# it, where it would only multiply their run time.
test: setup fmt-check vet
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -count=1 -timeout 30m ./e2e
	$(MAKE) fuzz

# Each fuzz target runs for FUZZTIME on top of its checked-in seed corpus
# (testdata/fuzz/<target>/); plain `go test` already replays the corpus.
# 8 targets x 5s plus their builds stay under two minutes on 2 cores; run
# one longer with e.g. `make fuzz FUZZTIME=10m FUZZ_TARGETS=./imaging:FuzzDecode`.
FUZZTIME ?= 5s
FUZZ_TARGETS ?= \
	./schemas:FuzzDecodeS3Event \
	./schemas:FuzzDecoders \
	./imaging:FuzzDecode \
	./processors/classifier/onnx:FuzzInspect \
	./processors/classifier:FuzzParseCard \
	./processors/classifier:FuzzParseLabels \
	./processors/labelsink:FuzzParseExport \
	./security/objkey:FuzzCheck

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -parallel 2 $$pkg; \
	done

bench-resize: build
	./scripts/setup-bench.sh
	./bench/resize/run.sh

clean:
	rm -rf bin
