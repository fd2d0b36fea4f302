#!/usr/bin/env bash
# Run on a machine with network access, not on the GPU machine: unpacks the build dependencies
# that the GPU machine's image lacks (the headers of PCRE2 and zstd, which the top-level configure
# requires; protobuf with protoc and its libraries, and ISA-L, for TensorBoard event files) into
# .deps/ (git-ignored), to be copied to the GPU machine with the source tree. CMakeLists.txt looks
# for them in .deps/usr/{bin,include,lib/x86_64-linux-gnu}; the build's RPATH finds the libraries
# at run time.
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(libpcre2-dev libzstd-dev libprotobuf-dev libprotobuf32 protobuf-compiler libprotoc32
          libisal-dev libisal2)
mkdir -p .deps/debs
cd .deps/debs
if ! apt-get download "${packages[@]}"; then
  apt-get update -qq
  apt-get download "${packages[@]}"
fi
for deb in *.deb; do dpkg -x "$deb" ..; done
echo "unpacked into $(cd .. && pwd): ${packages[*]}"
