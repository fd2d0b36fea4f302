#!/usr/bin/env bash
# Run on a machine with network access, not on the GPU machine: unpacks the build dependencies
# that the GPU machine's image lacks (the headers of PCRE2 and zstd, which the top-level configure
# requires) into .deps/ (git-ignored), to be copied to the GPU machine with the source tree.
# CMakeLists.txt looks for PCRE2 and zstd in .deps/usr/include and .deps/usr/lib/x86_64-linux-gnu.
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(libpcre2-dev libzstd-dev)
mkdir -p .deps/debs
cd .deps/debs
if ! apt-get download "${packages[@]}"; then
  apt-get update -qq
  apt-get download "${packages[@]}"
fi
for deb in *.deb; do dpkg -x "$deb" ..; done
echo "unpacked into $(cd .. && pwd): ${packages[*]}"
