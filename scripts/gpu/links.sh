#!/usr/bin/env bash
# On a GPU machine with 2 GPUs: two nodes simulated on one host. With NCCL's peer-to-peer and
# shared-memory transports off (NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1), NCCL moves the data over
# its network transport (sockets), as between two hosts. Measures the all-reduce bus bandwidth
# (bench_allreduce) and the 2-GPU scaling of 130M 16 x 2048 and 1.4B 4 x 2048 per GPU with fp32
# and bf16 gradients and two bucket sizes, against NVLink. JSON lines go to $OUT/links.jsonl.
source "$(dirname "$0")/common.sh"
mpi="mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE -x NCCL_P2P_DISABLE -x NCCL_SHM_DISABLE
  -x OMP_NUM_THREADS=4"
log=$out/links.jsonl

tagged() {  # prefixes each JSON line with the link it ran over
  sed "s/^{/{\"link\": \"$1\", /" | tee -a "$log"
}

allreduce() {
  for link in nvlink socket; do
    for bf16 in 0 1; do
      if [ $link = socket ]; then export NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1; else
        export NCCL_P2P_DISABLE=0 NCCL_SHM_DISABLE=0; fi
      $mpi build-gpu/bench_allreduce --bf16 $bf16 --max-mib 1024 | tagged $link
    done
  done
}

scaling() {
  for shape in "130m 16 2048" "1.4b 4 2048"; do
    read -r model batch seqlen <<<"$shape"
    local args=(--device cuda --model "$model" --batch "$batch" --seqlen "$seqlen" --steps 8)
    export NCCL_P2P_DISABLE=0 NCCL_SHM_DISABLE=0
    build-gpu/bench_train "${args[@]}" | tagged one-gpu
    $mpi build-gpu/bench_train "${args[@]}" | tagged nvlink
    export NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1
    $mpi build-gpu/bench_train "${args[@]}" --comm 0 | tagged socket
    for bf16 in 0 1; do
      for bucket in 25 100; do
        $mpi build-gpu/bench_train "${args[@]}" --bf16-grads $bf16 dist.bucket_mb=$bucket |
          sed "s/^{/{\"bucket_mb\": $bucket, /" | tagged socket
      done
    done
  done
}

: >"$log"
check "build" build_gpu bench_train bench_allreduce
check "all-reduce bus bandwidth, NVLink and socket transport" allreduce
check "2-GPU scaling over the socket transport" scaling
exit 0
