#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the build needs (skips what is already there).
set -euo pipefail
packages=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev nlohmann-json3-dev libhdf5-dev
          libyaml-cpp-dev libopenmpi-dev openmpi-bin libpcre2-dev libgtest-dev libgmock-dev
          zlib1g-dev libzstd-dev libprotobuf-dev protobuf-compiler libisal-dev python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
