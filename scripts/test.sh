#!/usr/bin/env bash
# The test command: installs missing dependencies, builds and runs every test: an optimized
# build (default-arch test binary, the arch-dependent tests again for -march=native,
# compile-fail tests, README example, examples, package consumer tests), the int8 model
# loader under libFuzzer (clang), then the unit tests again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)

# XQUANT_TEST_UNITY_BUILD: each test folder compiles as one unit (tests/CMakeLists.txt), a
# third less CPU than one unit per test file.
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DXQUANT_TEST_UNITY_BUILD=ON
cmake --build build/release -j "$jobs"
ctest --test-dir build/release --output-on-failure -j "$jobs"

# The int8 model loader under libFuzzer (clang; ASan + UBSan), from generated seeds, 20 s.
cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DXQUANT_BUILD_EXAMPLES=OFF -DXQUANT_TEST_NATIVE=OFF
cmake --build build/fuzz -j "$jobs" --target fuzz_int8_model_file make_int8_model_seeds
ctest --test-dir build/fuzz -L fuzz --output-on-failure

# Sanitizers: only the executables' tests (compile-fail and packaging run nothing new).
# -O1 -g1 (line tables: ASan's reports still name file and line) compiles in half the time
# of RelWithDebInfo's -O2 -g, which kept CI over 35 minutes on 2 cores. One test binary,
# built for -march=native (XQUANT_TEST_NATIVE_ONLY): the arch-dependent tests compile once,
# not twice, and the kernel tests run the widest instruction set, AVX2 and SSE2 rather
# than all 13 of an AVX-512 build (under ASan, int8/test_gemm.cpp with all 13 took five
# minutes of CPU to compile). The release build's two binaries run every arch bit for bit;
# code that only takes the default arch (e.g. the training ops) runs its native variant
# here and its baseline one there.
cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
      -DXQUANT_SANITIZE=address,undefined -DXQUANT_BUILD_EXAMPLES=OFF -DXQUANT_TEST_NATIVE_ONLY=ON \
      -DXQUANT_TEST_UNITY_BUILD=ON
cmake --build build/sanitize -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/sanitize --output-on-failure -j "$jobs" -LE compile_fail -E '^package:'
