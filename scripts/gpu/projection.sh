#!/usr/bin/env bash
# On a GPU machine with 2 GPUs: the inputs of the multi-node projection and its check
# (docs/performance.md, "Projection"). Measures the all-reduce of both links (NVLink; NCCL's
# socket transport with NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1, as between two hosts), profiles
# 130M 16 x 2048 and 1.4B 4 x 2048 on one GPU (bench_train --profile-layers 1), measures both on
# 2 GPUs over both links, checks scripts/project_scaling.py against the 2-GPU points (within 5% at
# the default 25 MiB buckets, fp32 and bf16 gradients; the 100 MiB points are compared and
# printed, not gated), and writes the 2-64 node tables. 2.8B is not measured: its profile is the
# 1.4B one scaled by FLOPs (project_scaling.py --scale-to). Output in $OUT (default /tmp/gpu-out):
# projection_*.json[l], projection_points.json, projection_check.md, projection_table.md.
source "$(dirname "$0")/common.sh"
mpi="mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE -x NCCL_P2P_DISABLE -x NCCL_SHM_DISABLE
  -x OMP_NUM_THREADS=4"
project="python3 scripts/project_scaling.py"
links=$out/projection_links.jsonl
runs=$out/projection_runs.jsonl

tagged() {  # prefixes each JSON line with its tags and appends it to $2
  sed "s/^{/{$1, /" | tee -a "$2"
}

nvlink() { export NCCL_P2P_DISABLE=0 NCCL_SHM_DISABLE=0; }
socket() { export NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1; }

allreduce() {
  for link in nvlink socket; do
    $link
    for bf16 in 0 1; do
      $mpi build-gpu/bench_allreduce --bf16 $bf16 --max-mib 1024 | tagged "\"link\": \"$link\"" "$links"
    done
  done
}

profiles() {
  nvlink
  for shape in "130m 16" "1.4b 4"; do
    read -r model batch <<<"$shape"
    build-gpu/bench_train --device cuda --model "$model" --batch "$batch" --seqlen 2048 --steps 8 \
      --profile-layers 1 | tee "$out/projection_profile_$model.json"
    python3 -c "import json,sys; p=json.load(open(sys.argv[1])); assert len(p['slices']) > 2" \
      "$out/projection_profile_$model.json"
  done
}

two_gpus() {
  for shape in "130m 16" "1.4b 4"; do
    read -r model batch <<<"$shape"
    local args=(--device cuda --model "$model" --batch "$batch" --seqlen 2048 --steps 8)
    nvlink
    $mpi build-gpu/bench_train "${args[@]}" |
      tagged "\"model\": \"$model\", \"link\": \"nvlink\", \"bucket_mb\": 25" "$runs"
    socket
    for bf16 in 0 1; do
      for bucket in 25 100; do
        $mpi build-gpu/bench_train "${args[@]}" --bf16-grads $bf16 dist.bucket_mb=$bucket |
          tagged "\"model\": \"$model\", \"link\": \"socket\", \"bucket_mb\": $bucket" "$runs"
      done
    done
  done
}

# The measured points, each with the link's bandwidth and latency fitted to bench_allreduce in the
# gradients' dtype. $1: "gated" (25 MiB buckets) or "other" (100 MiB).
points() {
  python3 - "$out" "$1" <<'EOF'
import json, subprocess, sys
out, which = sys.argv[1], sys.argv[2]
def fit(link, dtype):
    r = subprocess.run(["python3", "scripts/project_scaling.py", "--fit", f"{out}/projection_links.jsonl",
                        "--link", link, "--dtype", dtype], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)
points = []
for line in open(f"{out}/projection_runs.jsonl"):
    r = json.loads(line)
    if (r["bucket_mb"] == 25) != (which == "gated"):
        continue
    link = fit(r["link"], "bf16" if r["bf16_grads"] else "fp32")
    p = {"name": f"{r['model']} {r['link']} {'bf16' if r['bf16_grads'] else 'fp32'} {r['bucket_mb']} MiB",
         "profile": f"projection_profile_{r['model']}.json", "measured_ms": r["ms_per_step"],
         "bf16_grads": bool(r["bf16_grads"]), "bucket_mb": r["bucket_mb"]}
    if r["link"] == "nvlink":
        p.update(nodes=1, gpus_per_node=2, intra_bw=link["bw"], intra_latency_us=link["latency_us"])
    else:
        p.update(nodes=2, gpus_per_node=1, bw=link["bw"], latency_us=link["latency_us"])
    points.append(p)
json.dump(points, open(f"{out}/projection_points_{which}.json", "w"), indent=1)
EOF
}

check_points() {
  points gated
  points other
  for link in nvlink socket; do
    for dtype in fp32 bf16; do $project --fit "$links" --link $link --dtype $dtype; done
  done | tee "$out/projection_link_fits.jsonl"
  $project --check "$out/projection_points_other.json" --tolerance 1 |
    tee "$out/projection_check_100mib.md"
  $project --check "$out/projection_points_gated.json" | tee "$out/projection_check.md"
}

# Efficiency over 2-64 nodes of 8 GPUs at 25, 50 and 100 GB/s per node, with the intra-node bus
# bandwidth of the 2-GPU NVLink fit and the latency defaults of project_scaling.py (assumed).
tables() {
  local intra i=0
  intra=$($project --fit "$links" --link nvlink --dtype fp32 |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['bw'], 1))")
  local p130=$out/projection_profile_130m.json p14=$out/projection_profile_1.4b.json
  for opts in "" "--bf16-grads" "--bf16-grads --hierarchical --bucket-mb 100"; do
    i=$((i + 1))
    echo "### ${opts:-fp32 gradients, 25 MiB buckets, flat ring} (intra-node $intra GB/s)"
    $project "$p130" "$p14" --table --intra-bw "$intra" $opts --json "$out/projection_table_$i.json"
    $project "$p14" --scale-to configs/mamba-2.8b.yaml --table --intra-bw "$intra" $opts | tail -3
    echo
  done | tee "$out/projection_table.md"
}

: >"$links"
: >"$runs"
check "build" build_gpu bench_train bench_allreduce
check "all-reduce of both links" allreduce
check "1-GPU profiles (130M 16 x 2048, 1.4B 4 x 2048)" profiles
check "2-GPU steps over NVLink and the socket transport" two_gpus
check "projection within 5% of the measured 2-GPU points" check_points
check "2-64 node tables" tables
exit 0
