# syntax=docker/dockerfile:1

# Two runtime images from one file:
#   docker build --target extproc -t llm-proxy-extproc .
#   docker build --target fakellm -t llm-proxy-fakellm .
# Pass --build-arg VERSION=... to stamp the extproc binary (-version prints it).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS deps
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

# The static probe used by the compose health checks (no shell in distroless).
FROM deps AS build-healthcheck
COPY deploy/healthcheck ./deploy/healthcheck
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w" -o /out/healthcheck ./deploy/healthcheck

FROM deps AS build-extproc
ARG VERSION=dev
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/extproc ./cmd/extproc
# An empty directory for cost records; a named volume mounted there takes
# its ownership (distroless has no shell to create it).
RUN mkdir -p /out/state

FROM deps AS build-fakellm
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w" -o /out/fakellm ./cmd/fakellm

# The ext_proc server. It reads configs/base.yml relative to /app unless
# LLM_PROXY_CONFIG says otherwise.
FROM gcr.io/distroless/static-debian12:nonroot AS extproc
WORKDIR /app
COPY --from=build-extproc /out/extproc /usr/local/bin/extproc
COPY --from=build-healthcheck /out/healthcheck /usr/local/bin/healthcheck
COPY configs/ /app/configs/
COPY --from=build-extproc --chown=nonroot:nonroot /out/state /var/lib/llm-proxy
USER nonroot:nonroot
EXPOSE 50051 9003
ENTRYPOINT ["/usr/local/bin/extproc"]

# The fake vendor for tests and local runs without vendor keys.
FROM gcr.io/distroless/static-debian12:nonroot AS fakellm
COPY --from=build-fakellm /out/fakellm /usr/local/bin/fakellm
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fakellm"]
