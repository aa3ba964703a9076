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

test: setup fmt-check vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

bench-resize: build
	./scripts/setup-bench.sh
	./bench/resize/run.sh

clean:
	rm -rf bin
