# syntax=docker/dockerfile:1
# podcred credproxy: the credential sidecar / endpoint.
# Build from the repository root:  docker build -f deploy/docker/credproxy.Dockerfile -t podcred/credproxy .
# Multi-stage: a pinned Rust toolchain builds the release binary; the runtime is distroless (glibc, CA
# certificates, no shell, no package manager) and runs as the nonroot user 65532.

# The toolchain the project is developed and tested with.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# aws-lc-rs (the TLS crypto provider) builds its C code with cmake + clang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p credproxy --bin credproxy \
 && install -D -m 0755 target/release/credproxy /out/credproxy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/credproxy /credproxy
USER 65532:65532
EXPOSE 9911 9912
ENTRYPOINT ["/credproxy"]
