#!/usr/bin/env bash
# Launches data-parallel training with Open MPI: one process per GPU (or per CPU socket).
#   scripts/launch.sh NPROC CONFIG [key=value ...]                             one node
#   HOSTFILE=hosts PER_NODE=8 scripts/launch.sh NPROC CONFIG [key=value ...]   several nodes
# hosts lists one node per line with its GPU count: "node1 slots=8". PER_NODE=G places exactly G
# ranks on each node (--map-by ppr:G:node). Each process takes the GPU of its rank on its node.
# NCCL_*, MAMBA_*, OMP_* and CUDA_VISIBLE_DEVICES of this shell reach every rank.
# See docs/distributed.md for the network variables and for Slurm. MAMBA=path picks the binary.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,9p' "$0"
  exit 2
fi
nproc=$1
shift
cd "$(dirname "$0")/.."
# NVLink multicast (NVLS) needs exclusive use of the GPUs' fabric; keep it off unless asked for.
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
args=(-np "$nproc" --bind-to none)
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
[ -n "${HOSTFILE:-}" ] && args+=(--hostfile "$HOSTFILE")
[ -n "${PER_NODE:-}" ] && args+=(--map-by "ppr:$PER_NODE:node")
for var in $(compgen -e | grep -E '^(NCCL_|MAMBA_|OMP_|CUDA_VISIBLE_DEVICES$)' || true); do
  args+=(-x "$var")
done
# The binary of the README's build (build/), else of the GPU scripts' (build-gpu/); MAMBA overrides.
mamba=${MAMBA:-}
for candidate in build/mamba build-gpu/mamba; do
  [ -z "$mamba" ] && [ -x "$candidate" ] && mamba=$candidate
done
[ -n "$mamba" ] || { echo "launch.sh: no mamba binary in build/ or build-gpu/: build first" >&2; exit 2; }
exec mpirun "${args[@]}" "$mamba" train "$@"
