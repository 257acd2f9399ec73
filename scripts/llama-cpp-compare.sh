#!/usr/bin/env bash
# Same-machine, same-session comparison with llama.cpp (the reference of issue #3):
# llama-bench on the F16 and Q4_1 model, then `agq bench`, then llama-bench again, and
# llama-perplexity on the first 40 chunks of WikiText-2 test.
#
# llama.cpp comes from PyPI (GitHub may be unreachable): the `llama-cpp-python` sdist vendors
# the llama.cpp source; we build only llama-bench, llama-perplexity and llama-quantize.
# Needs cmake (`pip install cmake`) and a C++ compiler. Build dir: $LLAMA_DIR
# (default .cache/llama.cpp); a second run reuses it.
#
#   scripts/llama-cpp-compare.sh [agq bench flags...]   (default: --plan fp16,w4a16,w4a8)
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_PY_VERSION=${LLAMA_PY_VERSION:-0.3.36}
LLAMA_DIR=${LLAMA_DIR:-.cache/llama.cpp}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
F16="$LLAMA_DIR/SmolLM2-135M-Instruct.F16.gguf"
THREADS=${THREADS:-2}

[ -f "$MODEL" ] || scripts/fetch-model.sh
mkdir -p "$LLAMA_DIR"
src="$LLAMA_DIR/llama_cpp_python-$LLAMA_PY_VERSION/vendor/llama.cpp"
bin="$src/build/bin"
if [ ! -x "$bin/llama-bench" ]; then
  if [ ! -d "$src" ]; then
    url=$(curl -fsSL "https://pypi.org/pypi/llama-cpp-python/$LLAMA_PY_VERSION/json" |
      python3 -c 'import json,sys; print([u["url"] for u in json.load(sys.stdin)["urls"] if u["packagetype"]=="sdist"][0])')
    echo "llama-cpp-compare: downloading $url" >&2
    curl -fsSL "$url" | tar xz -C "$LLAMA_DIR"
  fi
  command -v cmake >/dev/null || python3 -m pip install --quiet cmake
  cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  cmake --build "$src/build" -j"$(nproc)" --target llama-bench llama-perplexity llama-quantize >&2
fi
# The F16 model holds exactly the Q4_1 weights (dequantized), as agq's `fp16` preset does.
[ -f "$F16" ] || "$bin/llama-quantize" --allow-requantize "$MODEL" "$F16" F16 >&2
cargo build --release -q -p agq

[ $# -gt 0 ] || set -- --plan fp16,w4a16,w4a8
date -u +"%F %T UTC: llama-bench"
"$bin/llama-bench" -m "$F16" -m "$MODEL" -p 512 -n 128 -t "$THREADS" -r 3 -o md 2>/dev/null
date -u +"%F %T UTC: agq bench"
target/release/agq bench -p 512 -n 128 -t "$THREADS" -r 3 -o md "$@" 2>/dev/null
date -u +"%F %T UTC: llama-bench again"
"$bin/llama-bench" -m "$F16" -m "$MODEL" -p 512 -n 128 -t "$THREADS" -r 3 -o md 2>/dev/null
date -u +"%F %T UTC: llama-perplexity (F16, 40 chunks) vs agq eval --plan fp16"
"$bin/llama-perplexity" -m "$F16" -f data/wikitext-2-raw-test.txt -c 512 --chunks 40 -t "$THREADS" 2>&1 | grep 'Final estimate'
target/release/agq eval --plan fp16 --text data/wikitext-2-raw-test.txt --chunks 40 --threads "$THREADS" 2>/dev/null
