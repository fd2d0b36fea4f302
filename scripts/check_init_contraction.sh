#!/usr/bin/env bash
# Checks that the initialisation kernels do not depend on which multiply-adds a compiler fuses
# (util/repro_math.h says why that matters): kernels/cpu/init_fill.cpp must compile to the same
# assembly with GCC's -ffp-contract=fast and =off, and kernels/cuda/init_fill.cu (where nvcc is
# found) to the same sm_90 machine code with nvcc's --fmad=true and =false. Run it after editing
# util/repro_math.h, util/counter_rng.h or kernels/init_element.h.
#   scripts/check_init_contraction.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for contract in fast off; do
  g++ -std=c++17 -O3 -march=native -fopenmp -ffp-contract=$contract -Isrc -S \
    src/kernels/cpu/init_fill.cpp -o "$tmp/host_$contract.s"
done
if ! cmp -s "$tmp/host_fast.s" "$tmp/host_off.s"; then
  echo "check_init_contraction: kernels/cpu/init_fill.cpp depends on GCC's fusing of multiply-adds:" \
    "write the fused ones as fma() (util/repro_math.h)" >&2
  exit 1
fi
echo "host: the same assembly with -ffp-contract=fast and =off"

nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ ! -x "$nvcc" ]; then
  echo "device: skipped (no nvcc)"
  exit 0
fi
for fmad in true false; do
  "$nvcc" -std=c++17 -arch=sm_90 --use_fast_math --expt-relaxed-constexpr --fmad=$fmad -Isrc \
    -cubin src/kernels/cuda/init_fill.cu -o "$tmp/device_$fmad.cubin"
done
# The cubins differ in the notes that record the command line; the code sections must not.
python3 - "$tmp/device_true.cubin" "$tmp/device_false.cubin" <<'EOF'
import struct, sys

def code_sections(path):
    data = open(path, "rb").read()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * entsize) for i in range(count)]
    names_at = headers[names_index][4]
    sections = {}
    for name, _, _, _, offset, size in headers:
        end = data.index(b"\0", names_at + name)
        sections[data[names_at + name:end].decode()] = data[offset:offset + size]
    return {n: s for n, s in sections.items() if n.startswith(".text")}

fused, unfused = (code_sections(p) for p in sys.argv[1:3])
if not fused or fused != unfused:
    sys.exit("check_init_contraction: kernels/cuda/init_fill.cu depends on nvcc's fusing of "
             "multiply-adds: write the fused ones as fma() (util/repro_math.h)")
EOF
echo "device: the same sm_90 code with --fmad=true and =false"
