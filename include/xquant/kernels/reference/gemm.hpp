#pragma once
// Reference GEMM: the specification every fast GEMM path is tested against.
//
//   C[i][j] = alpha * sum_k op(A)[i][k] * op(B)[k][j] + beta * C[i][j]
//
// Row-major. op(A) is A (M x K, element (i,k) at A[i*lda + k]) or, with trans_a, A^T
// where A is K x M (element (i,k) at A[k*lda + i]); likewise B. With beta == 0, C is
// written without being read (it may hold NaN garbage), as BLAS does.

#include <cstddef>

namespace xquant::kernels::reference {

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      T acc = 0;
      for (std::size_t p = 0; p < k; ++p) {
        const T av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const T bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      T& out = c[i * ldc + j];
      out = beta == T(0) ? alpha * acc : alpha * acc + beta * out;
    }
  }
}

}  // namespace xquant::kernels::reference
