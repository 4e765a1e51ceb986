#pragma once
// The xsimd micro-kernel (every arch; the AVX2 fast path is this kernel on xsimd::avx2):
// int16 products summed in pairs into int32 lanes, pmaddwd-style.
//
// Why not vpmaddubsw (u8 x s8 -> pairs summed in int16, 32 products per ymm instruction):
// a pair sum can reach 2 * 255 * -128 = -65280, which it saturates to -32768; splitting the
// operands to stay exact costs more instructions than it saves. Here A's bytes are
// zero-extended and W's sign-extended to int16, and madd multiplies int16 pairs and adds
// each pair into one int32: |a0 w0 + a1 w1| <= 2 * 255 * 128 = 65280, exact (pmaddwd's one
// overflow, (-32768)^2 * 2, needs both operands at -32768, impossible here). The int32
// accumulators wrap modulo 2^32 like reference::int8::dot. Per 32-bit lane of the packed
// layout (one column's group [w0 w1 w2 w3]), the int16 view holds the words (w1:w0) and
// (w3:w2): (x << 8) >> 8 sign-extends w0, w2 and x >> 8 gives w1, w3, matched with A's
// broadcast group split the same way into (a0, a2) and (a1, a3). Per k group and vector of
// columns that is 2 madd + 2 add for 4 * lanes multiply-adds (16 per ymm instruction, the
// rate of vpmaddubsw + the vpmaddwd it needs to widen), plus 3 shifts for W shared by the
// tile's rows and 1 broadcast + 2 logic ops for A shared by the tile's columns.
//
// madd is one instruction on SSE2 / AVX2 / AVX-512BW; elsewhere (NEON, AVX1...) it is
// emulated with 32-bit shifts and multiplies, which computes the same bits.

#include <bit>
#include <cstddef>
#include <cstdint>

#include "xquant/kernels/gemm/blocking.hpp"
#include "xquant/kernels/int8/gemm/tile.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8::gemm_detail {

template <class A>
using i32 = simd::batch<std::int32_t, A>;
template <class A>
using i16 = simd::batch<std::int16_t, A>;

/// Per int32 lane: x.lo * y.lo + x.hi * y.hi of its two int16 halves (pmaddwd).
template <class A>
i32<A> madd(i16<A> x, i16<A> y, xsimd::generic) noexcept {
  const i32<A> x32 = xsimd::bitwise_cast<i32<A>>(x), y32 = xsimd::bitwise_cast<i32<A>>(y);
  return ((x32 << 16) >> 16) * ((y32 << 16) >> 16) + (x32 >> 16) * (y32 >> 16);
}
#if XSIMD_WITH_SSE2
template <class A>
i32<A> madd(i16<A> x, i16<A> y, xsimd::sse2) noexcept {
  return _mm_madd_epi16(x, y);
}
#endif
#if XSIMD_WITH_AVX2
template <class A>
i32<A> madd(i16<A> x, i16<A> y, xsimd::avx2) noexcept {
  return _mm256_madd_epi16(x, y);
}
#endif
#if XSIMD_WITH_AVX512BW
template <class A>
i32<A> madd(i16<A> x, i16<A> y, xsimd::avx512bw) noexcept {
  return _mm512_madd_epi16(x, y);
}
#endif

template <class A>
i32<A> madd(i16<A> x, i16<A> y) noexcept {
  return madd<A>(x, y, A{});
}

/// The madd micro-kernel for xsimd arch Arch.
template <class Arch>
struct madd_kernel {
  using requant_arch = Arch;
  using I32 = i32<Arch>;
  using I16 = i16<Arch>;
  using U16 = simd::batch<std::uint16_t, Arch>;
  using I8 = simd::batch<std::int8_t, Arch>;
  // A's bytes are read as one little-endian 32-bit word (a0 in the low byte), the layout of
  // W's lanes; every arch xsimd 8.1 supports is little-endian.
  static_assert(std::endian::native == std::endian::little, "int8 gemm: little-endian targets only");

  static constexpr std::size_t vector_cols = I32::size;
  // 4 x 4 vectors with 32 registers (16 accumulators + 8 W halves + 2 A halves), 3 x 2 with 16.
  static constexpr bool many_registers = kernels::gemm_detail::vector_registers<Arch> >= 32;
  static constexpr std::size_t mr = many_registers ? 4 : 3;
  // Convolution tiles always read through row pointers (tile_rows::indirect): with 3 or 4
  // rows they fit in registers, and one loop fewer per tile shape and arch halves the
  // instantiations this kernel adds to every build.
  static constexpr bool strided_runs = false;
  static constexpr std::size_t nv = many_registers ? 4 : 2;
  static constexpr std::size_t rows_for(std::size_t, std::size_t, std::size_t) noexcept { return mr; }  // always mr
  static constexpr std::size_t tile_vectors(std::size_t, std::size_t) noexcept { return nv; }         // always nv
  static_assert(nv * vector_cols <= panel_cols);

  /// acc += one k group: row i's 4 A bytes (read_a(i)) times the NV vectors of W at w.
  template <std::size_t MR, std::size_t NV, class ReadA>
  static void step(I32 (&acc)[MR][NV], const std::int8_t* w, ReadA read_a) noexcept {
    I16 w_even[NV], w_odd[NV];  // (w0, w2) and (w1, w3) of each lane, sign-extended
#pragma GCC unroll 4
    for (std::size_t j = 0; j < NV; ++j) {
      const I16 x = xsimd::bitwise_cast<I16>(I8::load_aligned(w + j * vector_cols * k_group));
      w_even[j] = (x << 8) >> 8;
      w_odd[j] = x >> 8;
    }
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) {
      const U16 x = xsimd::bitwise_cast<U16>(I32(static_cast<std::int32_t>(read_a(i))));
      const I16 a_even = xsimd::bitwise_cast<I16>(x & U16(0xFF)), a_odd = xsimd::bitwise_cast<I16>(x >> 8);
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) acc[i][j] += madd<Arch>(a_even, w_even[j]) + madd<Arch>(a_odd, w_odd[j]);
    }
  }

  /// C[0 .. MR)[0 .. NV * vector_cols) of the job (its first job.cols columns; job.count
  /// tiles down a plain matrix); A's rows as in dpbusd_kernel::tile (vnni.hpp), a
  /// convolution's always indirect.
  template <std::size_t MR, std::size_t NV, tile_rows Rows>
  static void tile(const tile_job& job, const panel_epilogue<Arch>& e) noexcept {
    for_each_tile<MR, Rows>(job, [&](const tile_job& t) XQUANT_SIMD_INLINE_LAMBDA { one_tile<MR, NV, Rows>(t, e); });
  }

 private:
  template <std::size_t MR, std::size_t NV, tile_rows Rows>
  XQUANT_SIMD_INLINE static void one_tile(const tile_job& job, const panel_epilogue<Arch>& e) noexcept {
    // Must equal reference::int8::gemm bit for bit (sums modulo 2^32 in another order).
    I32 acc[MR][NV];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) acc[i][j] = I32(0);
    const std::size_t lda = job.lda, groups = job.segment_len / k_group;
    const std::int8_t* w = job.w;
    if constexpr (Rows == tile_rows::matrix) {
      std::uint32_t tail[MR] = {};
      if (job.k % k_group) gather_tail(job.a, lda, job.k, tail);
      next_tile_prefetcher prefetch_next(job.next, lda, MR);
      const std::uint8_t* a = job.a;
      for (std::size_t g = 0; g < groups; ++g, a += k_group, w += job.w_stride) {
        prefetch_next(g * k_group);
        step(acc, w, [&](std::size_t i) { return group_bytes(a + i * lda); });
      }
      if (job.k % k_group) step(acc, w, [&](std::size_t i) { return tail[i]; });
    } else {
      static_assert(Rows == tile_rows::indirect);
      const std::uint8_t* rows[MR];
      for (std::size_t i = 0; i < MR; ++i) rows[i] = job.row[i];
      for (std::size_t seg = 0; seg < job.segments; ++seg) {
        std::size_t p = seg * job.segment_stride;  // byte offset of the group in every row
        for (std::size_t g = 0; g < groups; ++g, p += k_group, w += job.w_stride)
          step(acc, w, [&](std::size_t i) { return group_bytes(rows[i] + p); });
      }
    }
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) acc[i][j].store_aligned(job.sums + (i * NV + j) * vector_cols);
    e.template store_tile<MR, NV>(job.sums, job);
  }
};

}  // namespace xquant::kernels::int8::gemm_detail
XQUANT_SIMD_END
