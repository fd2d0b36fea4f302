#!/usr/bin/env bash
# Configures and builds the CUDA tree in build-gpu on the GPU machine (sourced by the gpu_*.sh
# scripts). Usage: source scripts/gpu_build.sh OUT_DIR [targets...]   (no targets: everything)
gpu_build_out=$1
shift
gpu_build_targets=()
for t in "$@"; do gpu_build_targets+=(--target "$t"); done
# A warm machine keeps build-gpu/ between calls, and the copied tree can carry older timestamps
# than the objects built there: touch the sources so that nothing stale is reused.
find src tests bench -type f -exec touch {} +
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DMAMBA_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  >"$gpu_build_out/configure.log" 2>&1 || { tail -30 "$gpu_build_out/configure.log"; exit 1; }
cmake --build build-gpu -j"$(nproc)" "${gpu_build_targets[@]}" >"$gpu_build_out/build.log" 2>&1 ||
  { grep -E "error" "$gpu_build_out/build.log" | head -30; exit 1; }
echo "built"
