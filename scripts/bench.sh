#!/usr/bin/env bash
# Builds the benchmarks (Release, -march=native) and runs them; the figures in the README
# come from these commands. Installs Google Benchmark and PyTorch (the comparison peer,
# used only here) if missing.
#   scripts/bench.sh [gemm|requantize|train ...]   default: all
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --bench
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DXQUANT_BUILD_BENCHMARKS=ON \
      -DXQUANT_BUILD_TESTS=OFF -DXQUANT_BUILD_EXAMPLES=OFF
cmake --build build/bench -j "$(nproc)"
which=("$@")
[[ ${#which[@]} -eq 0 ]] && which=(gemm requantize train)
for w in "${which[@]}"; do
  case "$w" in
    gemm)       build/bench/benchmarks/bench_gemm --benchmark_repetitions=5 --benchmark_report_aggregates_only=true ;;
    requantize) build/bench/benchmarks/bench_requantize --benchmark_repetitions=5 --benchmark_report_aggregates_only=true ;;
    train)      benchmarks/train_throughput.py --binary build/bench/benchmarks/train_throughput ;;
    *) echo "unknown benchmark '$w' (gemm, requantize, train)" >&2; exit 2 ;;
  esac
done
