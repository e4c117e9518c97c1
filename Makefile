# podcred — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Test peers (moto, serverless-offline, etcd, kube-apiserver, upstream webhook, load tools) are installed
# here by tests/peers/install-*.sh: idempotent, pinned, git-ignored.
export PODCRED_CACHE ?= $(CURDIR)/.cache
# No test or demo may reach a real AWS account or IMDS.
export AWS_EC2_METADATA_DISABLED := true
export AWS_CONFIG_FILE := /dev/null
export AWS_SHARED_CREDENTIALS_FILE := /dev/null
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

.PHONY: help build images peers test unit e2e e2e-node demo bench fuzz soak lint fmt clean-cache

help:
	@echo "make demo   - run the seed's flow locally (moto STS + serverless-offline Lambda + credproxy + gateway)"
	@echo "make test   - install the pinned test peers and run the whole suite"
	@echo "make unit   - fast unit and in-process tests (plain cargo test, no peers)"
	@echo "make e2e    - only the real kube-apiserver end-to-end tests"
	@echo "make images - container images of webhook, credproxy, gateway in $(TARGET_DIR)/images/*.tar (no registry)"
	@echo "make e2e-node - only the real-node tests (kubelet + containerd, the chart and the seed's flow as pods)"
	@echo "make bench  - benchmarks (criterion + load tools side by side with the peers)"
	@echo "make fuzz   - every cargo-fuzz target FUZZ_SECONDS seconds (default 30; installs cargo-fuzz, nightly)"
	@echo "make soak   - fault soak SOAK_SECONDS seconds (default 300, min 180): load + scheduled faults, report in target/soak/"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"

build:
	$(CARGO) build --workspace --bins

# Reproducible images from the release binaries on a Debian-package base (deploy/images/build-images.py).
images:
	$(CARGO) build --release --locked --bin webhook --bin credproxy --bin gateway
	python3 deploy/images/build-images.py --bin-dir $(TARGET_DIR)/release --out $(TARGET_DIR)/images --tag $(VERSION)

# Every installer is idempotent and exits non-zero if its peer cannot be installed.
peers:
	@set -e; for installer in tests/peers/install-*.sh; do \
	  echo "==> $$installer"; bash "$$installer"; \
	done

unit:
	$(CARGO) test --workspace

# Peer-backed tests are #[ignore]d for plain `cargo test`; here they run, and fail loudly if a peer is missing.
test: peers build images
	$(CARGO) test --workspace --lib --bins --tests --examples -- --include-ignored
	# criterion benches in test mode: each benchmark runs once (criterion rejects libtest's --include-ignored)
	$(CARGO) test --workspace --benches

e2e: peers build
	$(CARGO) test -p integration --test kube_admission --test kube_resilience --test kube_sidecars --test kube_chart -- --include-ignored --test-threads=1

# The node tests run containerd and a kubelet: root only, one test at a time (they share the machine's CPUs).
e2e-node: peers build images
	$(CARGO) test -p integration --test images --test node_e2e --test node_controller --test teardown -- --include-ignored --test-threads=1

demo:
	bash deploy/demo/demo.sh

bench: peers
	bash tests/bench/run-all.sh

# cargo-fuzz targets (fuzz/README.md); `make test` replays their corpora on stable.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" bash fuzz/run.sh

# The fault soak (tests/src/bin/soak.rs): real peers, scheduled faults, exit 1 when a target is missed.
# Not part of `make test`: it needs at least 180 s of load plus ~1 min of peer start-up.
SOAK_SECONDS ?= 300
soak: peers build
	$(CARGO) run -p integration --bin soak -- $(SOAK_SECONDS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-cache:
	rm -rf $(PODCRED_CACHE)
