#pragma once
// Float GEMM (float and double), the contract of reference::gemm:
//
//   C = alpha * op(A) * op(B) + beta * C     row-major; beta == 0: C is not read
//
// Implementation (kernels/gemm/): op(A) and op(B) are packed into aligned panels
// (pack.hpp, transposes resolved there), blocked for L1 / L2 (blocking.hpp) and multiplied
// by a register-tiled xsimd micro-kernel (microkernel.hpp); driver.hpp has the loops. When
// all of M fits one A block (the conv GEMMs: M is a channel count) and op(B)'s rows are
// contiguous, the micro-kernel reads B in place instead of from packed panels. Results
// differ from the reference only by summation order (k is summed in blocks, each block in
// k order with FMAs), and never depend on the thread count or on packed vs in place.
//
// gemm_indexed: B given by the start of each of its rows instead of a leading dimension
// (implicit im2col: nn::conv2d's padded-grid path).
//
// Arch. gemm<Arch>(...) runs the kernel for one xsimd arch (tests run every compiled-in
// arch the CPU has); gemm<T>(...) uses simd::default_arch, except for tiny products (at
// most `tiny` multiply-adds), which take the reference loop. Other scalar types always
// take the reference loop.
//
// Threads. A product of at least `parallel_threshold` multiply-adds is split over the
// shared pool (core/parallel.hpp) by column (or row) tiles when num_threads() > 1 and the
// calling thread is not already running a chunk of that pool (thread_pool::in_parallel():
// nn::conv2d calls gemm inside its own parallel_for over images; those calls stay serial).
// The split never changes the bits of C (driver.hpp).

#include <cstddef>
#include <type_traits>

#include "xquant/core/parallel.hpp"
#include "xquant/kernels/gemm/driver.hpp"
#include "xquant/kernels/reference/gemm.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels {

namespace gemm_detail {

/// Products below this many multiply-adds stay on one thread: waking the pool and packing
/// A (or B) once more per thread costs more than the split saves (2^21 ~ 10 us on one core).
inline constexpr std::size_t parallel_threshold = std::size_t{1} << 21;

/// Products of at most this many multiply-adds take the reference loop: the packed path
/// has a fixed cost of ~50 ns (blocking arithmetic, packing a zero-padded tile), more than
/// the loop needs below ~4x4x4 (measured on Zen 5: 1x1x1 3 ns vs 48 ns, 4x4x4 94 vs 71 ns).
inline constexpr std::size_t tiny = 32;

/// True when gemm may split over `pool` from this thread (see "Threads" above).
inline bool pool_usable(const thread_pool& pool) { return pool.size() > 1 && !pool.in_parallel(); }

template <class Arch>
concept simd_arch = std::is_base_of_v<xsimd::generic, Arch>;
template <class T>
concept simd_float = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
problem<T> make_problem(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                        std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  return {op_view(a, lda, trans_a), op_view(b, ldb, trans_b), m, n, k, alpha, beta, c, ldc};
}

/// C = alpha * op(A) * op(B) + beta * C with row i of B at b + b_rows[i]: the reference
/// loop of gemm_indexed, for the scalar types the packed kernel does not take.
template <class T>
void indexed_reference(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                       std::size_t lda, const T* b, const std::size_t* b_rows, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      T acc = 0;
      for (std::size_t p = 0; p < k; ++p) {
        const T av = trans_a ? a[p * lda + i] : a[i * lda + p];
        acc += av * (trans_b ? b[b_rows[j] + p] : b[b_rows[p] + j]);
      }
      T& out = c[i * ldc + j];
      out = beta == T(0) ? alpha * acc : alpha * acc + beta * out;
    }
  }
}

}  // namespace gemm_detail

/// C = alpha * op(A) * op(B) + beta * C with the micro-kernel for Arch (see reference::gemm).
template <gemm_detail::simd_arch Arch, gemm_detail::simd_float T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
          const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  thread_pool& pool = default_pool();
  const bool parallel = m * n * k >= gemm_detail::parallel_threshold && gemm_detail::pool_usable(pool);
  gemm_detail::run<Arch>(gemm_detail::make_problem(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
                         parallel ? &pool : nullptr);
}

/// C = alpha * op(A) * op(B) + beta * C (see reference::gemm), on simd::default_arch.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
          const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  if constexpr (gemm_detail::simd_float<T>) {
    if (m * n * k <= gemm_detail::tiny) {
      reference::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    gemm<simd::default_arch, T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    reference::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

/// gemm with B given by the start of each of its rows: row i of B is the contiguous run
/// b + b_rows[i] (n elements when !trans_b, B being k x n; k elements when trans_b, B being
/// n x k). b_rows[i] = i * ldb is plain gemm<Arch>, with the same bits. Rows may overlap:
/// this is implicit im2col (nn::conv2d), whose im2col rows are shifted windows of one
/// padded image, read in place by the packing instead of copied into a matrix first.
template <gemm_detail::simd_arch Arch, gemm_detail::simd_float T>
void gemm_indexed(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                  std::size_t lda, const T* b, const std::size_t* b_rows, T beta, T* c, std::size_t ldc) {
  thread_pool& pool = default_pool();
  const bool parallel = m * n * k >= gemm_detail::parallel_threshold && gemm_detail::pool_usable(pool);
  const gemm_detail::problem<T> g{gemm_detail::op_view(a, lda, trans_a),
                                  gemm_detail::op_view_indexed(b, b_rows, trans_b), m, n, k, alpha, beta, c, ldc};
  gemm_detail::run<Arch>(g, parallel ? &pool : nullptr);
}

/// gemm_indexed on simd::default_arch (no tiny-product shortcut: the packed kernel always,
/// so its bits equal gemm<simd::default_arch>'s); other scalar types take a plain loop.
template <class T>
void gemm_indexed(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                  std::size_t lda, const T* b, const std::size_t* b_rows, T beta, T* c, std::size_t ldc) {
  if constexpr (gemm_detail::simd_float<T>) {
    gemm_indexed<simd::default_arch, T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, b_rows, beta, c, ldc);
  } else {
    gemm_detail::indexed_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, b_rows, beta, c, ldc);
  }
}

}  // namespace xquant::kernels
XQUANT_SIMD_END
