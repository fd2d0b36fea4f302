#!/usr/bin/env bash
# On the GPU machine: runs the CUDA test binary and fails unless every test ran and passed.
# Where no GPU is found the CUDA tests skip, which is right on a CPU machine but on the GPU
# machine means they tested nothing, so any skip (or no test at all) counts as a failure here.
#   scripts/gpu/cuda_tests.sh BINARY LOG [gtest arguments...]
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: scripts/gpu/cuda_tests.sh BINARY LOG [gtest arguments...]" >&2
  exit 2
fi
binary=$1 log=$2
shift 2
if [ ! -x "$binary" ]; then
  echo "cuda tests: $binary is missing: build with -DMAMBA_CUDA=ON on the GPU machine" >&2
  exit 1
fi
"$binary" "$@" >"$log" 2>&1
status=$?
tail -25 "$log"
# Skips are listed once as they happen ("... (0 ms)") and again in the summary.
skips=$(grep '^\[  SKIPPED \] [A-Za-z_]' "$log" | sed 's/ (.*//' | sort -u)
skipped=$(printf '%s' "$skips" | grep -c .)
passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\{0,1\}\.$/\1/p' "$log")
if [ "$status" -ne 0 ]; then
  echo "cuda tests: FAILED (exit status $status; see $log)" >&2
  exit 1
fi
if [ "$skipped" -gt 0 ]; then
  echo "cuda tests: FAILED: $skipped skipped on the GPU machine:" >&2
  printf '%s\n' "$skips" >&2
  exit 1
fi
if [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
  echo "cuda tests: FAILED: no test ran (see $log)" >&2
  exit 1
fi
echo "cuda tests: all $passed ran and passed"
