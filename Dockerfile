# eyeflow, CPU build. Multi-stage: build with cgo against libjpeg-turbo, run as
# a non-root user on a slim Debian with only the runtime libraries.
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg62-turbo-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/eyeflow ./cmd/eyeflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg62-turbo ca-certificates wget && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/eyeflow --create-home eyeflow
COPY --from=build /out/eyeflow /usr/local/bin/eyeflow
USER eyeflow
WORKDIR /var/lib/eyeflow
EXPOSE 8080 4222
ENTRYPOINT ["eyeflow"]
CMD ["up", "--data", "/var/lib/eyeflow/data", "--http", "0.0.0.0:8080", "--nats-listen", "0.0.0.0:4222"]
