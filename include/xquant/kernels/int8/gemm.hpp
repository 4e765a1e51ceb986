#pragma once
// Int8 GEMM with int32 accumulation and fused requantization: the integer-only engine's
// convolutions (after im2col) and dense layers.
//
//   C[m][n] = clamp(qmin, qmax, zero_point + requant_n(bias[n] + sum_k A[m][k] W[n][k]))
//
// exactly as reference::int8::gemm (the specification: A uint8 [M][K] with row stride lda,
// W int8 [N][K], int32 bias, per-channel fixed-point requantization, uint8 C [M][N] with row
// stride ldc), bit for bit, on every path.
//
// Use: pack the weights once (pack_weights, gemm/pack.hpp: also gives the column sums the
// converter folds the input zero point with), validate the shapes once (check_gemm_args,
// throws), then call gemm as often as needed: it is noexcept, allocates nothing and needs
// no caller scratch (a tile's accumulators stay in registers for the whole K, then reach
// the epilogue through a 1.5 KB buffer on the stack). Rows are independent: threads may
// split M (A + r0 * lda, C + r0 * ldc); the result does not depend on the split.
//
// Paths (gemm/vnni.hpp, gemm/madd.hpp):
//   avx512_vnni  vpdpbusd on zmm, 6 x 64 tiles            if compiled with AVX-512 VNNI
//   avx_vnni     vpdpbusd on ymm, 6 x 16 tiles            if compiled with AVX-VNNI
//   generic      xsimd on any Arch, int16 pairs (pmaddwd); on xsimd::avx2 this is the AVX2
//                fast path (vpmaddwd, exact where vpmaddubsw would saturate)
// gemm<Arch> takes default_path<Arch>(): the widest VNNI compiled in that Arch's registers
// allow, else generic<Arch>; gemm<Arch>(path, ...) runs a given path (tests and benchmarks;
// path must satisfy runs_here). There is no run-time dispatch, as in kernels/requantize.hpp:
// a header cannot put VNNI code into a translation unit compiled without -mavx512vnni.

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

#include "xquant/core/error.hpp"
#include "xquant/kernels/int8/gemm/driver.hpp"
#include "xquant/kernels/int8/gemm/madd.hpp"
#include "xquant/kernels/int8/gemm/pack.hpp"
#include "xquant/kernels/int8/gemm/vnni.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

enum class gemm_path { generic, avx_vnni, avx512_vnni };

inline const char* path_name(gemm_path p) noexcept {
  switch (p) {
    case gemm_path::avx_vnni:
      return "avx_vnni";
    case gemm_path::avx512_vnni:
      return "avx512_vnni";
    default:
      return "generic";
  }
}

/// Whether this translation unit has the code of path p.
constexpr bool compiled(gemm_path p) noexcept {
  switch (p) {
    case gemm_path::avx_vnni:
      return XQUANT_INT8_AVX_VNNI;
    case gemm_path::avx512_vnni:
      return XQUANT_INT8_AVX512_VNNI;
    default:
      return true;
  }
}

namespace gemm_detail {

/// CPUID leaf 7 bits: AVX512_VNNI (subleaf 0, ECX bit 11) and AVX-VNNI (subleaf 1, EAX bit
/// 4). Read directly: Clang 14's __builtin_cpu_supports does not know "avxvnni". The OS
/// side (AVX / AVX-512 register state) is checked by simd::available.
inline bool cpu_has(gemm_path p) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (p == gemm_path::avx512_vnni) {
    return __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ecx >> 11 & 1) &&
           simd::available<xsimd::avx512bw>();
  }
  if (p == gemm_path::avx_vnni) {
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax >> 4 & 1) && simd::available<xsimd::avx2>();
  }
  return true;
#else
  return p == gemm_path::generic;
#endif
}

}  // namespace gemm_detail

/// Whether path p is compiled in and the CPU running the program has its instructions
/// (generic: for some arch; each Arch separately through simd::available<Arch>()).
inline bool runs_here(gemm_path p) noexcept { return compiled(p) && gemm_detail::cpu_has(p); }

/// The path gemm<Arch> takes.
template <class Arch>
constexpr gemm_path default_path() noexcept {
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch> && compiled(gemm_path::avx512_vnni)) {
    return gemm_path::avx512_vnni;
  } else if constexpr ((std::is_base_of_v<xsimd::avx2, Arch> || std::is_base_of_v<xsimd::avx512f, Arch>) &&
                       compiled(gemm_path::avx_vnni)) {
    return gemm_path::avx_vnni;
  } else {
    return gemm_path::generic;
  }
}

/// Throws unless gemm(m, a, lda, w, bias, rq, c, ldc) is well formed: lda >= K, ldc >= N,
/// non-null A and C (when M > 0 and K, N > 0), requantization arrays and clamp for uint8
/// (rq must have N channels: a view of make_requant_channel_params<uint8_t>).
inline void check_gemm_args(std::size_t m, const std::uint8_t* a, std::size_t lda, const packed_weights& w,
                            const requant_channel_args& rq, const std::uint8_t* c, std::size_t ldc) {
  check<shape_error>(lda >= w.k(), "int8 gemm: lda ", lda, " < K = ", w.k());
  check<shape_error>(ldc >= w.n(), "int8 gemm: ldc ", ldc, " < N = ", w.n());
  check<value_error>(m == 0 || w.k() == 0 || a != nullptr, "int8 gemm: null A");
  check<value_error>(m == 0 || w.n() == 0 || c != nullptr, "int8 gemm: null C");
  check<value_error>(w.n() == 0 || (rq.multiplier != nullptr && rq.shift != nullptr),
                     "int8 gemm: null requantization multipliers or shifts");
  check_output_params<std::uint8_t>(rq.zero_point, rq.qmin, rq.qmax);
}

namespace gemm_detail {

/// run_images (gemm/driver.hpp) on path p; p must be compiled in (otherwise the generic
/// path runs). Shared by gemm and the implicit convolution.
template <class Arch, class RowsOf>
void run_path(gemm_path p, std::size_t images, std::size_t m, RowsOf rows_of, const packed_weights& w,
              const std::int32_t* bias, const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc,
              std::size_t c_stride) noexcept {
#if XQUANT_INT8_AVX512_VNNI
  if (p == gemm_path::avx512_vnni)
    return run_images<dpbusd_kernel<zmm_dpbusd>>(images, m, rows_of, w, bias, rq, c, ldc, c_stride);
#endif
#if XQUANT_INT8_AVX_VNNI
  if (p == gemm_path::avx_vnni)
    return run_images<dpbusd_kernel<ymm_dpbusd>>(images, m, rows_of, w, bias, rq, c, ldc, c_stride);
#endif
  (void)p;
  run_images<madd_kernel<Arch>>(images, m, rows_of, w, bias, rq, c, ldc, c_stride);
}

}  // namespace gemm_detail

/// C = requantize(bias + A W^T) on path p (bias may be null: zeros). Trusted arguments
/// (check_gemm_args); p must be compiled in (otherwise the generic path runs).
template <class Arch = simd::default_arch>
void gemm(gemm_path p, std::size_t m, const std::uint8_t* a, std::size_t lda, const packed_weights& w,
          const std::int32_t* bias, const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc) noexcept {
  // Must equal reference::int8::gemm bit for bit.
  const gemm_detail::a_rows rows = gemm_detail::a_rows::matrix(a, lda, w.k());
  gemm_detail::run_path<Arch>(p, 1, m, [&](std::size_t) { return rows; }, w, bias, rq, c, ldc, 0);
}

/// C = requantize(bias + A W^T) on default_path<Arch>() (see the top of this file).
template <class Arch = simd::default_arch>
void gemm(std::size_t m, const std::uint8_t* a, std::size_t lda, const packed_weights& w, const std::int32_t* bias,
          const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc) noexcept {
  gemm<Arch>(default_path<Arch>(), m, a, lda, w, bias, rq, c, ldc);
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
