# eyeflow, CPU build. Multi-stage: the ONNX Runtime library from npm, the
# binary built with cgo against libjpeg-turbo, and a slim non-root runtime
# with only the libraries both need.

# ONNX Runtime 1.24.1 (the C API github.com/yalue/onnxruntime_go v1.27.0 is
# built against), exactly as scripts/install-ort.sh fetches it: `npm pack`
# only downloads the tarball, no install scripts run.
FROM node:22-bookworm-slim AS ort
ARG ORT_VERSION=1.24.1
ARG TARGETARCH
WORKDIR /ort
RUN case "${TARGETARCH:-amd64}" in amd64) arch=x64 ;; arm64) arch=arm64 ;; *) echo "unsupported arch ${TARGETARCH}" >&2; exit 1 ;; esac \
 && npm pack --silent "onnxruntime-node@${ORT_VERSION}" \
 && tar -xzf onnxruntime-node-*.tgz "package/bin/napi-v6/linux/${arch}/libonnxruntime.so.1" \
 && install -D -m 0755 "package/bin/napi-v6/linux/${arch}/libonnxruntime.so.1" /out/libonnxruntime.so.1

FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg62-turbo-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/eyeflow ./cmd/eyeflow

FROM debian:bookworm-slim
# libstdc++6/libgomp1: ONNX Runtime; wget: the compose healthchecks.
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg62-turbo libstdc++6 libgomp1 ca-certificates wget \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/eyeflow --create-home eyeflow
COPY --from=ort /out/libonnxruntime.so.1 /usr/local/lib/onnxruntime/libonnxruntime.so.1
COPY --from=build /out/eyeflow /usr/local/bin/eyeflow
ENV EYEFLOW_ORT_LIB=/usr/local/lib/onnxruntime/libonnxruntime.so.1
USER eyeflow
WORKDIR /var/lib/eyeflow
EXPOSE 8080 4222
ENTRYPOINT ["eyeflow"]
CMD ["up", "--data", "/var/lib/eyeflow/data", "--http", "0.0.0.0:8080", "--nats-listen", "0.0.0.0:4222"]
