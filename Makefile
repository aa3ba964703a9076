# The two commands of the README: `make demo` and `make test`.
GO      ?= go
BIN     := bin/eyeflow
PKGS    := ./...

.PHONY: setup build demo test vet fmt-check tidy-check helm-check fuzz bench-resize clean

setup:
	./scripts/setup.sh

build:
	./scripts/setup.sh --demo
	$(GO) build -o $(BIN) ./cmd/eyeflow

# Runs the embedded default on a synthetic data set: eyeflow up, eyeflow put, and a summary.
demo: build
	./scripts/demo.sh

vet:
	$(GO) vet $(PKGS)

# go.mod and go.sum must be what `go mod tidy` makes of the imports: every
# direct requirement listed as such, nothing unused.
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The Helm chart (deploy/helm/eyeflow): `helm lint --strict` for its default
# values and ci/'s, then deploy/helm/check renders it and decodes every object
# strictly into the Kubernetes API types. That check is a module of its own,
# so the Kubernetes modules stay out of go.mod: it gets its own tidy and vet.
# No cluster runs; helm is the pinned one scripts/install-helm.sh builds.
helm-check:
	@helm=$$(./scripts/install-helm.sh) && \
	$$helm lint --strict deploy/helm/eyeflow && \
	$$helm lint --strict deploy/helm/eyeflow -f deploy/helm/eyeflow/ci/full-values.yaml
	cd deploy/helm/check && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) test -count=1 ./...

# Unit and integration tests under the race detector; the tests built only
# without it (files tagged !race: those that start ONNX Runtime's WebGPU
# provider, since a race binary that started Dawn's threads hangs in the race
# detector's exit, and the plain-Go DenseNet121 reference, minutes under it)
# in a pass of their own; the whole-pipeline
# fault tests (e2e/, thousands of images through a three-node cluster) without
# it, where it would only multiply their run time.
test: setup tidy-check fmt-check vet helm-check
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -count=1 -timeout 30m ./e2e
	$(GO) test -count=1 -timeout 10m -run 'WithoutAdapter$$|WithoutGPUAdapter$$|AutoFallsBackToCPU$$|DenseNet121MatchesAReference$$' ./inference ./cmd/eyeflow
	$(MAKE) fuzz

# Each fuzz target runs a number of executions on top of its checked-in seed
# corpus (testdata/fuzz/<target>/); plain `go test` already replays the
# corpus. Counts, not durations: with a duration, Go 1.26's fuzz coordinator
# can fail a clean run with "context deadline exceeded" as the time runs out
# (golang/go#75804, fixed in Go 1.27). Each count is about 5s of this 2-core
# machine for its target. FUZZTIME overrides them all, e.g.
# `make fuzz FUZZTIME=5000000x FUZZ_TARGETS=./imaging:FuzzDecode:`.
FUZZTIME ?=
FUZZ_TARGETS ?= \
	./schemas:FuzzDecodeS3Event:100000x \
	./schemas:FuzzDecoders:100000x \
	./imaging:FuzzDecode:20000x \
	./imaging:FuzzDecodeDICOM:50000x \
	./onnx:FuzzInspect:80000x \
	./models:FuzzParseCard:25000x \
	./models:FuzzParseLabels:20000x \
	./processors/labelsink:FuzzParseExport:30000x \
	./security/objkey:FuzzCheck:100000x

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest#*:}; \
		n=$${FUZZTIME:-$${n:-100000x}}; \
		echo "fuzz $$fn in $$pkg for $$n"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$n -parallel 2 $$pkg; \
	done

bench-resize: build
	./scripts/setup-bench.sh
	./bench/resize/run.sh

clean:
	rm -rf bin
