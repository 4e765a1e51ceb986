#!/usr/bin/env bash
# The main job: installs missing dependencies, builds the examples and runs the demo on
# the real Fashion-MNIST data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$(nproc)" --target quantize_demo
build/release/examples/quantize_demo "$@"
