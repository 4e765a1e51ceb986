#pragma once
// Float GEMM (float and double), the contract of reference::gemm:
//
//   C = alpha * op(A) * op(B) + beta * C     row-major; beta == 0: C is not read
//
// Implementation (kernels/gemm/): op(A) and op(B) are packed into aligned panels
// (pack.hpp, transposes resolved there), blocked for L1 / L2 (blocking.hpp) and multiplied
// by a register-tiled xsimd micro-kernel (microkernel.hpp); driver.hpp has the loops.
// Results differ from the reference only by summation order (k is summed in blocks, each
// block in k order with FMAs), and never depend on the thread count.
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

}  // namespace xquant::kernels
XQUANT_SIMD_END
