#!/usr/bin/env bash
# On the GPU machine: does the loader scale (issue 12, item 5)? Builds bench_loader, writes a
# corpus of 1,000 shards of 5 M random uint16 ids (10 GB) to $LOADER_DIR (default /tmp), then
# reads shuffled batches (seq_len 256 x 32 rows, and 2048 x 4) in 1 process and in 8 at once (rank
# r of 8 each, as 8 ranks of one machine), and times opening a 10,000-shard corpus (twice: just
# written, and again). The must: every one of 8 ranks at least 20 M tokens/s; opening 10,000
# shards under 10 s. JSON lines go to JSONL (default $OUT/bench_loader.jsonl), logs to $OUT.
#   bash scripts/gpu/loader.sh [JSONL]
source "$(dirname "$0")/common.sh"
jsonl=${1:-$out/bench_loader.jsonl}
mkdir -p "$(dirname "$jsonl")"
: >"$jsonl"
b=build-gpu
big=${LOADER_DIR:-/tmp}/loader_1000x5M
many=${LOADER_DIR:-/tmp}/loader_10000x4k

bench() {
  timeout 900 $b/bench_loader "$@" | tee -a "$jsonl"
}

# The last JSON line's `key` must satisfy `test` (a Python expression in v).
must() {
  python3 -c "
import json, sys
v = json.loads(open('$jsonl').read().splitlines()[-1])['$1']
print('$1 =', v, '($2)')
sys.exit(0 if $2 else 1)"
}

big_corpus=(--dir "$big" --shards 1000 --shard-tokens 5000000 --verify 0)
eight_ranks() {
  bench "${big_corpus[@]}" --procs 8 --batches 20000 "$@" && must tokens_per_s 'v >= 20e6'
}
open_many() {
  bench --dir "$many" --shards 10000 --shard-tokens 4096 && must open_s 'v < 10'
}

nproc
check "build" build_gpu bench_loader
check "write 1,000 shards x 5 M tokens" bench "${big_corpus[@]}" --batches 10
check "1 process, seq_len 256 x 32 rows" bench "${big_corpus[@]}" --batches 20000
check "8 processes, seq_len 256 x 32 rows: each >= 20 M tokens/s" eight_ranks
check "8 processes, seq_len 2048 x 4 rows: each >= 20 M tokens/s" eight_ranks --seqlen 2048 \
  --batch 4
check "write 10,000 shards x 4096 tokens; open" bench --dir "$many" --shards 10000 \
  --shard-tokens 4096
check "open 10,000 shards again: < 10 s" open_many
exit 0
