# malconv / malrun: the two entry points are `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
# Kernels need a CPU target (Swift SIMD FMAs become libm calls without one).
TARGET_CPU ?= native
RELEASE_FLAGS := -c release -Xswiftc -target-cpu -Xswiftc $(TARGET_CPU) -Xcc -march=$(TARGET_CPU)
BIN := .build/release
SAMPLES := Samples/gpt2-fortunes Samples/llama3-fortunes Samples/deepseek-v3-fortunes
DEBIAN_PACKAGES := libzstd-dev libjson-c-dev pkg-config

.PHONY: deps build demo test clean

## Install the Debian packages the build needs, if they are missing.
deps:
	@if ! pkg-config --exists libzstd json-c 2>/dev/null || [ ! -f /usr/include/zstd.h ] || [ ! -f /usr/include/json-c/json.h ]; then \
		echo "installing $(DEBIAN_PACKAGES)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEBIAN_PACKAGES); \
	fi

build: deps
	$(SWIFT) build $(RELEASE_FLAGS)

## The main job on the bundled samples.
demo: build
	@for m in $(SAMPLES); do \
		echo "== malconv inspect $$m"; \
		$(BIN)/malconv inspect $$m || exit 1; \
	done

test: deps
	$(SWIFT) test

clean:
	rm -rf .build
