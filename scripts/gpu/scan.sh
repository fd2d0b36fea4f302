#!/usr/bin/env bash
# On the GPU machine (with .deps/ from scripts/gpu/deps.sh in the tree): builds the CUDA tests and
# the scan benchmark, runs the tests (any skip fails), then the benchmark.
#   bash scripts/gpu/scan.sh [--sweep] [--profile]
# --sweep passes on to bench_scan (more segment counts, the fp32 path); --profile also runs Nsight
# Compute on one forward and one backward at the first shape. Logs go to $OUT.
source "$(dirname "$0")/common.sh"
sweep=() profile=0
for arg in "$@"; do
  case $arg in
    --sweep) sweep=(--sweep) ;;
    --profile) profile=1 ;;
    *) echo "scan.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

profile_scan() {
  ncu --clock-control none -k regex:"scan_(fwd|bwd)_kernel" -c 2 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats \
    --section WarpStateStats --section Occupancy --section LaunchStats \
    ./build-gpu/bench_scan --profile >"$out/ncu.txt" 2>&1
  ncu --clock-control none -k regex:"scan_(fwd|bwd)_kernel" -c 2 --metrics \
sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,\
sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active,\
sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active,\
sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,\
sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active \
    ./build-gpu/bench_scan --profile >"$out/ncu_pipes.txt" 2>&1
  grep -E "scan_(fwd|bwd)_kernel|pipe|inst_executed|issue_active" "$out/ncu_pipes.txt"
  grep -E "scan_(fwd|bwd)_kernel|Duration|Issue Slots Busy|Issued Ipc|Executed Ipc A|No Eligible|Active Warps Per|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Stall|Theoretical Occ|Block Limit" "$out/ncu.txt" | head -60
}

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
check "build" build_gpu mamba_cuda_tests bench_scan
check "CUDA tests, none skipped" scripts/gpu/cuda_tests.sh ./build-gpu/mamba_cuda_tests \
  "$out/tests.log"
check "bench_scan" bash -c "set -o pipefail; ./build-gpu/bench_scan ${sweep[*]} | tee $out/bench.jsonl"
[ "$profile" = 1 ] && check "profile" profile_scan
exit 0
