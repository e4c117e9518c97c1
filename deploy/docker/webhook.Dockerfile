# syntax=docker/dockerfile:1
# podcred webhook: the admission webhook (drop-in for amazon-eks-pod-identity-webhook; the binary is /webhook, as upstream's image).
# Build from the repository root:  docker build -f deploy/docker/webhook.Dockerfile -t podcred/webhook .
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
    cargo build --release --locked -p webhook --bin webhook \
 && install -D -m 0755 target/release/webhook /out/webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/webhook /webhook
USER 65532:65532
EXPOSE 8443 9999
ENTRYPOINT ["/webhook"]
