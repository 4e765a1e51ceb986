#pragma once
// The instruction sets the kernel tests compare against their scalar references: every one
// compiled in (simd::compiled_archs: 13 in a -march=native build on an AVX-512 machine), or,
// when XQUANT_TEST_FEW_ARCHS is defined, only the widest of them, AVX2 and SSE2 (the
// sanitizer build of scripts/test.sh: each kernel is instantiated and compiled under
// ASan + UBSan once per arch in this list, and the full list made int8/test_gemm.cpp alone
// take five minutes of CPU there; the release build's tests run every arch bit for bit).

#include "xquant/kernels/simd.hpp"

namespace xquant_test {

#if defined(XQUANT_TEST_FEW_ARCHS) && XSIMD_WITH_AVX512BW
using tested_archs = xsimd::arch_list<xsimd::avx512bw, xsimd::avx2, xsimd::sse2>;
#elif defined(XQUANT_TEST_FEW_ARCHS) && XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
using tested_archs = xsimd::arch_list<xsimd::fma3<xsimd::avx2>, xsimd::sse2>;
#else
using tested_archs = xquant::simd::compiled_archs;
#endif

/// Calls f(Arch{}) for every arch of tested_archs this CPU can run; returns how many.
template <class F>
int for_each_runnable_arch(F&& f) {
  int count = 0;
  xquant::simd::for_each_arch(tested_archs{}, [&](auto arch) {
    if (xquant::simd::available<decltype(arch)>()) {
      f(arch);
      ++count;
    }
  });
  return count;
}

}  // namespace xquant_test
