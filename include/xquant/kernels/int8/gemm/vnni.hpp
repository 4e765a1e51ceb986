#pragma once
// The VNNI micro-kernels: vpdpbusd, u8 x s8 dot products of 4 bytes accumulated into int32
// lanes, on zmm (AVX-512 VNNI) or ymm (AVX-VNNI). xsimd 8.1 has no VNNI arch, so these are
// intrinsics, compiled only where the compiler targets the extension.
//
// Exactness: vpdpbusd (not the saturating vpdpbusds) adds the 4 products of a lane, each in
// [-32640, 32385], to the lane with a wrapping 32-bit add: the int32 sum of
// reference::int8::dot modulo 2^32, in another order (exact, integer adds commute).
//
// Tile: MR rows x NV vectors of 16 (zmm) or 8 (ymm) columns. Each k group loads NV vectors
// of packed W (aligned), broadcasts the group's 4 A bytes of each row (one vpbroadcastd from
// memory) and does MR * NV vpdpbusd. 6 x 4 on zmm: 24 accumulators + 4 W + 1 A of the 32
// registers, 10 loads per 24 vpdpbusd, and 64 columns = one panel (N = 64 layers are one
// column tile). Convolutions whose output rows are multiples of 7 pixels take 7-row tiles
// instead (rows_for), 1 vector wide up to N = 64 (tile_vectors). 6 x 2 on ymm: 12 + 2 + 1
// of the 16 registers AVX-VNNI (VEX) can name.
// vpdpbusd has a latency of ~4 cycles and this core (Zen 5) issues two per cycle, so ~8-12
// independent chains are needed (measured: 4 chains give half the peak, 8 about 92 %, 12
// 99 %). Tiles with fewer than 7 accumulators (small M: M = 1 dense layers, ragged edges)
// split k over KS interleaved accumulator sets, summed at the end, as far as the registers
// allow. From 7 up, one set: on the Zen 4 of the README's figures (one vpdpbusd a cycle), a
// 7 x 1 convolution tile split in two sets (14 chains) ran slower than with 7 (resnet's
// 3x3 16 -> 16: 9.7 -> 9.0 us per image, its stem 2.6 -> 2.3);
// the zeroing and summing of a second set cost more than the chains gain at K = 12-144.
//
// A plain matrix's full tiles come in one call (tile_job::count, tile.hpp's for_each_tile):
// a call per tile cost as much as a K = 16 tile's multiply-adds (GEMM of M = 10192, K = N =
// 16: 2.27 -> 2.02 us per 784 rows). A convolution's tiles still come one call each: its
// strided tiles, looped in the kernel, ran slower (the stem 2.6 -> 3.4 us per image).
//
// GCC 12 needs the accumulators' code to be written carefully or it keeps them in memory
// (each costs a store and a reload per vpdpbusd, halving the rate): every loop over them
// fully unrolled, no call and no loop while they are live (the partial k group's bytes are
// gathered before the k loop, the epilogue gets them through a buffer after it), and an asm
// statement instead of the vpdpbusd builtin (see zmm_dpbusd::dot). The exception: a tile of
// 7 accumulators passes them to an out-of-line epilogue as arguments, in registers
// (panel_epilogue::store_float_registers); the epilogue inlined into the kernel made GCC
// spill them (3x3 16 -> 16: 9.1 -> 11.3 us per image; 12.6 with the epilogue in asm).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "xquant/kernels/int8/gemm/tile.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8::gemm_detail {

#if defined(__AVX512VNNI__) && XSIMD_WITH_AVX512BW
#define XQUANT_INT8_AVX512_VNNI 1
/// zmm registers, AVX-512 VNNI.
struct zmm_dpbusd {
  using reg = __m512i;
  using requant_arch = xsimd::avx512bw;
  static constexpr std::size_t mr = 7, nv = 4, max_accumulators = 24;
  /// Rows per tile (dpbusd_kernel::rows_for): 7 for a convolution whose output rows 7
  /// divides, else 6 (a plain matrix has no rows to align with). 7 x 4 tiles leave no
  /// register for A's broadcast: they pay where a deep k loop hides that (3x3 64 -> 64 on
  /// 7x7, K = 576: 8.8 -> 8.3 us per image) and cost where it is short (1x1 16 -> 64 on
  /// 28x28, K = 16: 7.4 -> 8.2 us), so 4-vector tiles take 7 rows only for K >= 256.
  static constexpr std::size_t rows_for(std::size_t vectors, std::size_t out_w, std::size_t k) noexcept {
    if (out_w > 0 && out_w % 7 == 0 && (vectors <= 3 || k >= 256)) return 7;
    return 6;
  }
  /// Vectors per column tile (dpbusd_kernel::tile_vectors): 1 for a convolution whose
  /// output rows 7 divides and whose N fits one panel, so that all its tiles are 7 x 1 and
  /// hand their accumulators to the epilogue in registers; else nv. Against 7 x 2 and 7 x 4
  /// tiles (conv timer, us per image): resnet's stride-2 3x3 16 -> 32 4.62 -> 4.50, 3x3
  /// 32 -> 32 on 14x14 8.26 -> 8.15, 64 -> 64 on 7x7 8.13 -> 7.99, stride-2 3x3 32 -> 64
  /// 4.32 -> 4.19, its 1x1 stride-2 shortcuts 0.91 -> 0.85 and 0.74 -> 0.68.
  static constexpr std::size_t tile_vectors(std::size_t out_w, std::size_t n) noexcept {
    return out_w > 0 && out_w % 7 == 0 && n <= panel_cols ? 1 : nv;
  }
  static reg zero() noexcept { return _mm512_setzero_si512(); }
  static reg load(const std::int8_t* p) noexcept { return _mm512_load_si512(p); }
  static reg broadcast(std::uint32_t x) noexcept { return _mm512_set1_epi32(static_cast<int>(x)); }
  static reg dot(reg acc, reg a, reg w) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
    // GCC 12 register-allocates the vpdpbusd builtin badly once the accumulators are used
    // after the k loop (the partial-group step): it copies and spills them inside the loop
    // (measured: 17 stack stores and ~24 moves per 24 vpdpbusd). A tied "+v" asm operand
    // keeps them in registers. ({AT&T|Intel} operand orders for either -masm dialect.)
    asm("vpdpbusd {%2, %1, %0|%0, %1, %2}" : "+v"(acc) : "v"(a), "vm"(w));
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, a, w);
#endif
  }
  static reg add(reg x, reg y) noexcept { return _mm512_add_epi32(x, y); }
  static void store(std::int32_t* p, reg x) noexcept { _mm512_store_si512(p, x); }
};
#else
#define XQUANT_INT8_AVX512_VNNI 0
#endif

#if defined(__AVXVNNI__) && XSIMD_WITH_AVX2
#define XQUANT_INT8_AVX_VNNI 1
/// ymm registers, AVX-VNNI (VEX encoded: 16 registers).
struct ymm_dpbusd {
  using reg = __m256i;
  using requant_arch = xsimd::avx2;
  static constexpr std::size_t mr = 6, nv = 2, max_accumulators = 12;
  static constexpr std::size_t rows_for(std::size_t, std::size_t, std::size_t) noexcept { return mr; }
  static constexpr std::size_t tile_vectors(std::size_t, std::size_t) noexcept { return nv; }
  static reg zero() noexcept { return _mm256_setzero_si256(); }
  static reg load(const std::int8_t* p) noexcept { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static reg broadcast(std::uint32_t x) noexcept { return _mm256_set1_epi32(static_cast<int>(x)); }
  static reg dot(reg acc, reg a, reg w) noexcept {
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
    // As zmm_dpbusd::dot. With AVX-512 the EVEX form can use all 32 registers (a VEX-only
    // asm would make GCC shuttle values from ymm16-31 into ymm0-15).
    asm("vpdpbusd {%2, %1, %0|%0, %1, %2}" : "+v"(acc) : "v"(a), "vm"(w));
    return acc;
#elif defined(__GNUC__) && !defined(__clang__)
    // As zmm_dpbusd::dot; {vex} (written %{vex%}: braces are dialect alternatives in asm)
    // selects the AVX-VNNI encoding, "x" its registers 0-15.
    asm("%{vex%} vpdpbusd {%2, %1, %0|%0, %1, %2}" : "+x"(acc) : "x"(a), "xm"(w));
    return acc;
#else
    return _mm256_dpbusd_avx_epi32(acc, a, w);
#endif
  }
  static reg add(reg x, reg y) noexcept { return _mm256_add_epi32(x, y); }
  static void store(std::int32_t* p, reg x) noexcept { _mm256_store_si256(reinterpret_cast<__m256i*>(p), x); }
};
#else
#define XQUANT_INT8_AVX_VNNI 0
#endif

/// The vpdpbusd micro-kernel over the registers R (zmm_dpbusd or ymm_dpbusd).
template <class R>
struct dpbusd_kernel {
  using reg = typename R::reg;
  using requant_arch = typename R::requant_arch;
  static constexpr std::size_t vector_cols = sizeof(reg) / 4;
  static constexpr std::size_t mr = R::mr, nv = R::nv;
  /// Rows per tile for tiles of `vectors` vectors, A's rows being output pixels of rows
  /// out_w long (0: a plain matrix). Up to 7 on zmm. Image widths are commonly multiples of
  /// 7 (7-224; the reference models' 28, 14, 7), and a tile that crosses an output row
  /// reads its rows through pointers, ~23 % slower: with 6-row tiles every seventh tile of a
  /// 28-pixel row did, and most of a 7-pixel row's. Per image (conv timer, 15 rounds):
  /// resnet's stem 3.07 -> 2.64 us, 16 -> 16 3x3 10.3 -> 9.75, 64 -> 64 3x3 on 7x7 8.8 -> 8.3.
  static constexpr std::size_t rows_for(std::size_t vectors, std::size_t out_w, std::size_t k) noexcept {
    return R::rows_for(vectors, out_w, k);
  }
  /// Vectors per column tile of a GEMM whose A rows are output pixels of rows out_w long
  /// (0: a plain matrix), N columns (R::tile_vectors).
  static constexpr std::size_t tile_vectors(std::size_t out_w, std::size_t n) noexcept {
    return R::tile_vectors(out_w, n);
  }
  static constexpr bool strided_runs = true;  // convolution tiles inside one output row (tile()'s comment)
  static constexpr std::size_t chains = 12;  // independent vpdpbusd chains wanted below 7 accumulators
  // Bytes of W prefetched ahead by the 1- and 2-row tiles (8 groups of a 64-column panel).
  // Those tiles (M = 1 dense layers) are bound by the L2 -> L1 stream of W; the hardware
  // prefetcher alone left ~20 % on the table (dense 3136 -> 128, batch 1: 370 -> 445 GOPS).
  static constexpr std::size_t prefetch_distance = 2048;

  /// acc += one k group: row i's 4 A bytes (read_a(i)) times the NV vectors of W at w.
  template <std::size_t MR, std::size_t NV, class ReadA>
  static void step(reg (&acc)[MR][NV], const std::int8_t* w, ReadA read_a) noexcept {
    reg wv[NV];
#pragma GCC unroll 4
    for (std::size_t j = 0; j < NV; ++j) wv[j] = R::load(w + j * sizeof(reg));
    if constexpr (MR <= 2) {  // W streams from L2, each byte used by <= 2 rows: fetch ahead
      const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(w) + prefetch_distance;  // may pass the end
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV * sizeof(reg); j += 64)
        kernels::gemm_detail::prefetch(reinterpret_cast<const void*>(ahead + j));
    }
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) {
      const reg av = R::broadcast(read_a(i));
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) acc[i][j] = R::dot(acc[i][j], av, wv[j]);
    }
  }

  /// C[0 .. MR)[0 .. NV * vector_cols) of the job (its first job.cols columns; job.count
  /// such tiles down a plain matrix, tile.hpp's for_each_tile), A's rows as
  /// Rows says (tile.hpp): a plain matrix (one run of K per row, at job.a + i * lda; the
  /// next tile's rows are prefetched), a convolution tile inside one output row (runs from
  /// job.a + i * lda) or across two (runs from job.row[i]). Separate loops: the strided ones
  /// keep all rows in one pointer, and the registers 6 row pointers take make GCC spill
  /// (measured: a loop general enough for all three slowed plain GEMMs with small K 15-70 %).
  template <std::size_t MR, std::size_t NV, tile_rows Rows>
  static void tile(const tile_job& job, const panel_epilogue<requant_arch>& e) noexcept {
    for_each_tile<MR, Rows>(job, [&](const tile_job& t) XQUANT_SIMD_INLINE_LAMBDA { one_tile<MR, NV, Rows>(t, e); });
  }

 private:
  template <std::size_t MR, std::size_t NV, tile_rows Rows>
  XQUANT_SIMD_INLINE static void one_tile(const tile_job& job, const panel_epilogue<requant_arch>& e) noexcept {
    // Must equal reference::int8::gemm bit for bit (sums modulo 2^32 in another order).
    constexpr std::size_t KS = MR * NV >= 7 ? 1 : std::clamp<std::size_t>(
        std::min((chains + MR * NV - 1) / (MR * NV), R::max_accumulators / (MR * NV)), 1, 4);
    const std::size_t w_stride = job.w_stride, lda = job.lda;
    reg acc[KS][MR][NV];
#pragma GCC unroll 4
    for (std::size_t s = 0; s < KS; ++s)
#pragma GCC unroll 8
      for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (std::size_t j = 0; j < NV; ++j) acc[s][i][j] = R::zero();
    const std::int8_t* w = job.w;
    // acc += groups [0, groups) of the run at a + i * lda of every row i.
    const auto strided_run = [&](const std::uint8_t* a, std::size_t groups, auto prefetch) {
      std::size_t g = 0;
      for (; g + KS <= groups; g += KS, a += KS * k_group, w += KS * w_stride) {
        prefetch(g);
#pragma GCC unroll 4
        for (std::size_t s = 0; s < KS; ++s)
          step(acc[s], w + s * w_stride, [&](std::size_t i) { return group_bytes(a + s * k_group + i * lda); });
      }
      if constexpr (KS > 1) {
        for (; g < groups; ++g, a += k_group, w += w_stride)
          step(acc[0], w, [&](std::size_t i) { return group_bytes(a + i * lda); });
      }
    };
    const std::size_t groups = job.segment_len / k_group;  // whole groups per run
    if constexpr (Rows == tile_rows::matrix) {
      std::uint32_t tail[MR] = {};  // K % 4 last bytes (a convolution's runs hold whole groups)
      if (job.k % k_group) gather_tail(job.a, lda, job.k, tail);
      next_tile_prefetcher prefetch_next(job.next, lda, MR);
      static_assert(k_group * KS * MR <= 64, "the prefetcher must touch every line");
      strided_run(job.a, groups, [&](std::size_t g) { prefetch_next(g * k_group); });
      if (job.k % k_group) step(acc[0], w, [&](std::size_t i) { return tail[i]; });
    } else if constexpr (Rows == tile_rows::strided_runs) {
      for (std::size_t seg = 0; seg < job.segments; ++seg)
        strided_run(job.a + seg * job.segment_stride, groups, [](std::size_t) {});
    } else {
      const std::uint8_t* rows[MR];
      for (std::size_t i = 0; i < MR; ++i) rows[i] = job.row[i];
      for (std::size_t seg = 0; seg < job.segments; ++seg) {
        std::size_t p = seg * job.segment_stride, g = 0;  // p: byte offset of group g in every row
        for (; g + KS <= groups; g += KS, p += KS * k_group, w += KS * w_stride) {
#pragma GCC unroll 4
          for (std::size_t s = 0; s < KS; ++s)
            step(acc[s], w + s * w_stride, [&](std::size_t i) { return group_bytes(rows[i] + p + s * k_group); });
        }
        if constexpr (KS > 1) {
          for (; g < groups; ++g, p += k_group, w += w_stride)
            step(acc[0], w, [&](std::size_t i) { return group_bytes(rows[i] + p); });
        }
      }
    }
    constexpr bool in_registers = KS == 1 && NV == 1 && MR <= max_register_accumulators;
    if constexpr (panel_epilogue<requant_arch>::float_capable && in_registers) {
      // (KS == 1 needs 7 accumulators: the 7 x 1 tiles of convolutions, tile_vectors.)
      if (e.float_folded && job.cols == vector_cols) {  // the accumulators in registers
        [&]<std::size_t... I>(std::index_sequence<I...>) {
          e.store_float_registers(job, acc[0][I][0]...);
        }(std::make_index_sequence<MR>{});
        return;
      }
    }
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) {
        reg sum = acc[0][i][j];
#pragma GCC unroll 4
        for (std::size_t s = 1; s < KS; ++s) sum = R::add(sum, acc[s][i][j]);
        R::store(job.sums + (i * NV + j) * vector_cols, sum);
      }
    }
    e.template store_tile<MR, NV>(job.sums, job);
  }
};

}  // namespace xquant::kernels::int8::gemm_detail
XQUANT_SIMD_END
