#!/usr/bin/env bash
# On a GPU machine with 2 GPUs: the inputs of the multi-node projection and its check
# (docs/performance.md, "Projection"). Measures the all-reduce over both links (NVLink; NCCL's
# socket transport with NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1, as between two hosts); profiles
# 130M 16 x 2048 and 1.4B 4 x 2048 per GPU (bench_train --profile-layers 1) on one GPU and on two
# over both links; checks scripts/project_scaling.py against the 2-GPU step times (gated: within
# 5% at the default 25 MiB buckets, fp32 and bf16 gradients, with the contention each run
# measured; printed, not gated: the 100 MiB points and the model without contention); and writes
# the 2-64 node tables. 2.8B is not measured: its profile is the 1.4B one scaled by FLOPs
# (project_scaling.py --scale-to). Everything lands in $OUT (default /tmp/gpu-out) as projection_*.
# About 10 minutes in all; the parts can run as separate calls on one $OUT:
#   bash scripts/gpu/projection.sh [build] [links] [one] [two] [check] [tables]   (default: all)
source "$(dirname "$0")/common.sh"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(build links one two check tables)
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }
mpi="mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE -x NCCL_P2P_DISABLE -x NCCL_SHM_DISABLE
  -x OMP_NUM_THREADS=4"
project="python3 scripts/project_scaling.py"
links=$out/projection_links.jsonl
runs=$out/projection_runs.jsonl
shapes=("130m 16" "1.4b 4")

nvlink() { export NCCL_P2P_DISABLE=0 NCCL_SHM_DISABLE=0; }
socket() { export NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1; }

allreduce() {
  for link in nvlink socket; do
    $link
    for bf16 in 0 1; do
      $mpi build-gpu/bench_allreduce --bf16 $bf16 --max-mib 1024 |
        sed "s/^{/{\"link\": \"$link\", /" | tee -a "$links"
    done
  done
}

# profile MODEL BATCH NAME [mpirun] [bench_train args...]: one profiled run into $out/NAME.json,
# also listed in $runs with its model, link and file.
profile() {
  local model=$1 batch=$2 name=$3 launcher=$4
  shift 4
  $launcher build-gpu/bench_train --device cuda --model "$model" --batch "$batch" --seqlen 2048 \
    --steps 8 --profile-layers 1 "$@" | grep '^{' >"$out/$name.json"
  cat "$out/$name.json"
  python3 -c "import json,sys; p=json.load(open(sys.argv[1])); assert len(p['slices']) > 2" \
    "$out/$name.json"
}

one_gpu() {
  nvlink
  for shape in "${shapes[@]}"; do
    read -r model batch <<<"$shape"
    profile "$model" "$batch" "projection_1gpu_$model" ""
  done
}

two_gpus() {
  for shape in "${shapes[@]}"; do
    read -r model batch <<<"$shape"
    nvlink
    profile "$model" "$batch" "projection_nvlink_${model}_fp32_25" "$mpi"
    echo "{\"model\": \"$model\", \"link\": \"nvlink\", \"bf16\": 0, \"bucket_mb\": 25}" >>"$runs"
    socket
    for bf16 in 0 1; do
      for bucket in 25 100; do
        local dtype=fp32
        [ $bf16 = 1 ] && dtype=bf16
        profile "$model" "$batch" "projection_socket_${model}_${dtype}_$bucket" "$mpi" \
          --bf16-grads $bf16 dist.bucket_mb=$bucket
        printf '{"model": "%s", "link": "socket", "bf16": %s, "bucket_mb": %s}\n' \
          "$model" $bf16 $bucket >>"$runs"
      done
    done
  done
}

# points WHICH CONTENTION: the measured 2-GPU points as project_scaling.py --check takes them,
# each with its link's bandwidth and latency fitted to bench_allreduce in the gradients' dtype.
# WHICH: gated (25 MiB buckets) or other (100 MiB). CONTENTION: "fit" or a number.
points() {
  python3 - "$out" "$1" "$2" <<'EOF'
import json, subprocess, sys
out, which, contention = sys.argv[1], sys.argv[2], sys.argv[3]
def fit(link, dtype):
    r = subprocess.run(["python3", "scripts/project_scaling.py", "--fit",
                        f"{out}/projection_links.jsonl", "--link", link, "--dtype", dtype],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout)
points = []
for line in open(f"{out}/projection_runs.jsonl"):
    r = json.loads(line)
    if (r["bucket_mb"] == 25) != (which == "gated"):
        continue
    dtype = "bf16" if r["bf16"] else "fp32"
    name = f"projection_{r['link']}_{r['model']}_{dtype}_{r['bucket_mb']}"
    measured = json.load(open(f"{out}/{name}.json"))
    link = fit(r["link"], dtype)
    p = {"name": f"{r['model']} {r['link']} {dtype} {r['bucket_mb']} MiB",
         "profile": f"{name}.json", "measured_ms": measured["ms_per_step"],
         "bf16_grads": bool(r["bf16"]), "bucket_mb": r["bucket_mb"],
         "contention": contention if contention == "fit" else float(contention)}
    if r["link"] == "nvlink":
        p.update(nodes=1, gpus_per_node=2, intra_bw=link["bw"], intra_latency_us=link["latency_us"])
    else:
        p.update(nodes=2, gpus_per_node=1, bw=link["bw"], latency_us=link["latency_us"])
    points.append(p)
json.dump(points, open(f"{out}/projection_points_{which}_{contention}.json", "w"), indent=1)
EOF
}

check_points() {
  for link in nvlink socket; do
    for dtype in fp32 bf16; do $project --fit "$links" --link $link --dtype $dtype; done
  done | tee "$out/projection_link_fits.jsonl"
  points other fit
  points gated 0
  points gated fit
  echo "## 100 MiB buckets (not gated)"
  $project --check "$out/projection_points_other_fit.json" --tolerance 1
  echo "## without contention (not gated)"
  $project --check "$out/projection_points_gated_0.json" --tolerance 1
  echo "## gated"
  $project --check "$out/projection_points_gated_fit.json" --json "$out/projection_check.json"
}

# Efficiency over 2-64 nodes of 8 GPUs at 25, 50 and 100 GB/s per node from the 1-GPU profiles,
# with the intra-node bus bandwidth of the 2-GPU NVLink fit and project_scaling.py's latency
# defaults (assumed); without contention, and with the contention each model measured over the
# socket transport (fp32, 25 MiB; 2.8B takes 1.4B's).
tables() {
  local intra k130 k14 i=0
  intra=$($project --fit "$links" --link nvlink --dtype fp32 |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['bw'], 1))")
  contention() {
    python3 -c "import json,sys; print([round(r['contention'], 3)
      for r in json.load(open(sys.argv[1])) if r['name'] == sys.argv[2]][0])" \
      "$out/projection_check.json" "$1 socket fp32 25 MiB"
  }
  k130=$(contention 130m)
  k14=$(contention 1.4b)
  local p130=$out/projection_1gpu_130m.json p14=$out/projection_1gpu_1.4b.json
  for opts in "" "--bf16-grads" "--bf16-grads --hierarchical --bucket-mb 100"; do
    for k in 0 measured; do
      i=$((i + 1))
      echo "### ${opts:-fp32 gradients, 25 MiB buckets, flat ring}; contention $k" \
        "(130M $k130, 1.4B $k14); intra-node $intra GB/s"
      local c130=0 c14=0
      [ $k = measured ] && c130=$k130 c14=$k14
      $project "$p130" --table --intra-bw "$intra" --contention "$c130" $opts \
        --json "$out/projection_table_${i}_130m.json"
      $project "$p14" --table --intra-bw "$intra" --contention "$c14" $opts \
        --json "$out/projection_table_${i}_1.4b.json" | tail -3
      $project "$p14" --scale-to configs/mamba-2.8b.yaml --table --intra-bw "$intra" \
        --contention "$c14" $opts --json "$out/projection_table_${i}_2.8b.json" | tail -3
      echo
    done
  done | tee "$out/projection_table.md"
}

if want links; then
  : >"$links"
fi
if want two; then
  : >"$runs"
fi
if want build; then check "build" build_gpu bench_train bench_allreduce; fi
if want links; then check "all-reduce over NVLink and the socket transport" allreduce; fi
if want one; then check "1-GPU profiles (130M 16 x 2048, 1.4B 4 x 2048)" one_gpu; fi
if want two; then check "2-GPU profiled steps over NVLink and the socket transport" two_gpus; fi
if want check; then check "projection within 5% of the measured 2-GPU points" check_points; fi
if want tables; then check "2-64 node tables" tables; fi
exit 0
