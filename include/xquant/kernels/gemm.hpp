#pragma once
// Float GEMM entry point (float and double), same contract as reference::gemm.
//
// PLACEHOLDER implementation: forwards to the reference loop with a cache-friendlier
// loop order. The packed, register-blocked xsimd kernel replaces the body of this
// function; callers do not change.

#include <cstddef>

#include "xquant/kernels/reference/gemm.hpp"

namespace xquant::kernels {

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  reference::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace xquant::kernels
