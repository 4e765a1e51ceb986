#!/usr/bin/env bash
# Installs the Debian packages xquant's build, tests and examples need, if missing.
# Usage: scripts/deps.sh [--bench]   (--bench adds Google Benchmark, hyperfine and PyTorch)
set -euo pipefail

packages=(g++ cmake ninja-build libxtensor-dev libxsimd-dev doctest-dev nlohmann-json3-dev
          zlib1g-dev libcli11-dev dataset-fashion-mnist clang libclang-rt-14-dev)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(libbenchmark-dev hyperfine python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "xquant: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "xquant: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
