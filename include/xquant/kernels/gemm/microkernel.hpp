#pragma once
// The GEMM micro-kernel: one MR x (NV * lanes) tile of C from packed panels (pack.hpp),
// written once over xsimd::batch<T, Arch>. The tile stays in MR * NV vector registers for
// the whole k loop; each k step loads NV vectors of B and broadcasts MR scalars of A, each
// feeding NV FMAs. On Zen 5 (AVX-512, 8 x 32 floats) it runs at the FMA peak (~255 GFLOP/s
// per core) on L1-resident panels; the cache blocks keep it fed.

#include <cstddef>

#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::gemm_detail {

// xsimd 8.1 has no AVX-512 fma kernel: its generic one computes x * y + z, which GCC fuses
// only under -ffp-contract=fast (GNU dialects) and which halves the peak otherwise.
template <class A, class T>
simd::batch<T, A> fma(simd::batch<T, A> x, simd::batch<T, A> y, simd::batch<T, A> z, xsimd::generic) noexcept {
  return xsimd::fma(x, y, z);
}
#if XSIMD_WITH_AVX512F
template <class A>
simd::batch<float, A> fma(simd::batch<float, A> x, simd::batch<float, A> y, simd::batch<float, A> z,
                          xsimd::avx512f) noexcept {
  return _mm512_fmadd_ps(x, y, z);
}
template <class A>
simd::batch<double, A> fma(simd::batch<double, A> x, simd::batch<double, A> y, simd::batch<double, A> z,
                           xsimd::avx512f) noexcept {
  return _mm512_fmadd_pd(x, y, z);
}
#endif

/// x * y + z, fused when the arch has an FMA instruction (one rounding).
template <class A, class T>
simd::batch<T, A> fma(simd::batch<T, A> x, simd::batch<T, A> y, simd::batch<T, A> z) noexcept {
  return fma<A>(x, y, z, A{});
}

/// Asks for the cache line holding p (no-op where the compiler has no prefetch builtin).
inline void prefetch(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

/// How the tile is written to C: c = alpha * acc when !read_c (C is not read), otherwise
/// c = alpha * acc + beta * c (beta = 1 for the k blocks after the first).
template <class T>
struct epilogue {
  T alpha, beta;
  bool read_c;
};

/// B of a micro-kernel call: a packed, aligned panel (NB * lanes elements per k step, of
/// which the first NV batches are used: NV < NB serves the narrow last column tile of C).
template <class T, std::size_t NB>
struct packed_b {
  const T* panel;
  template <class V>
  V load(std::size_t p, std::size_t j) const noexcept {
    return V::load_aligned(panel + (p * NB + j) * V::size);
  }
};

/// B of a micro-kernel call read in place: k step p is the run rows[p] + col, unaligned
/// (gemm_detail::run_blocks_one_row_block: no packing when B's rows are contiguous).
template <class T>
struct row_b {
  const T* const* rows;
  std::size_t col;
  template <class V>
  V load(std::size_t p, std::size_t j) const noexcept {
    return V::load_unaligned(rows[p] + col + j * V::size);
  }
};

/// C tile [MR x NV * lanes] at c (row stride ldc) from a packed A panel (MR per k step) and
/// B (packed_b or row_b), kc steps.
template <class Arch, std::size_t MR, std::size_t NV, class T, class B>
void micro_kernel_on(std::size_t kc, const T* a, B b, T* c, std::size_t ldc, epilogue<T> e) noexcept {
  // Must equal reference::gemm up to summation order: acc(i, j) = sum over p, in k order.
  using V = simd::batch<T, Arch>;
  constexpr std::size_t L = V::size;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (std::size_t i = 0; i < MR; ++i) {
    prefetch(c + i * ldc);  // C is touched only after the k loop: fetch it meanwhile
    prefetch(c + i * ldc + NV * L - 1);
#pragma GCC unroll 4
    for (std::size_t j = 0; j < NV; ++j) acc[i][j] = V(T(0));
  }
  for (std::size_t p = 0; p < kc; ++p, a += MR) {
    V bv[NV];
#pragma GCC unroll 4
    for (std::size_t j = 0; j < NV; ++j) bv[j] = b.template load<V>(p, j);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      const V ai(a[i]);
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) acc[i][j] = fma<Arch>(ai, bv[j], acc[i][j]);
    }
  }
  const V alpha(e.alpha), beta(e.beta);
#pragma GCC unroll 16
  for (std::size_t i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (std::size_t j = 0; j < NV; ++j) {
      T* out = c + i * ldc + j * L;
      const V r = acc[i][j] * alpha;
      (e.read_c ? fma<Arch>(beta, V::load_unaligned(out), r) : r).store_unaligned(out);
    }
  }
}

/// micro_kernel_on with a packed B panel (NB * lanes per k step).
template <class Arch, std::size_t MR, std::size_t NV, std::size_t NB = NV, class T>
void micro_kernel(std::size_t kc, const T* a, const T* b, T* c, std::size_t ldc, epilogue<T> e) noexcept {
  micro_kernel_on<Arch, MR, NV>(kc, a, packed_b<T, NB>{b}, c, ldc, e);
}

}  // namespace xquant::kernels::gemm_detail
XQUANT_SIMD_END
