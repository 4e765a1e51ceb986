#pragma once
// GEMM tiling: the register tile of the micro-kernel and the cache blocks around it.
//
// The loops (driver.hpp) follow Goto / BLIS:
//
//   for jc in steps of nc      columns of C and op(B)
//     for pc in steps of kc    the k dimension; op(B)[pc.., jc..] is packed (kc x nc)
//       for ic in steps of mc  rows; op(A)[ic.., pc..] is packed (mc x kc)
//         for jr in steps of nr, for ir in steps of mr: one micro-kernel call
//
// and each block size is chosen for the level of the memory hierarchy it must live in:
//  - the micro-kernel keeps an mr x nr tile of C in vector registers (mr * nr / lanes
//    accumulators; the rest of the register file holds the nr / lanes vectors of B and one
//    broadcast of A);
//  - one packed panel of B (kc x nr) is reused by the mc / mr micro-kernel calls of a jr
//    step: it must stay in L1 next to the A panel streaming through, so kc * nr * sizeof(T)
//    is about half of L1d;
//  - the packed block of A (mc x kc) is reused by every jr step: it lives in L2, so
//    mc * kc * sizeof(T) is about half of L2 (the other half holds B panels and C lines);
//  - the packed block of B (kc x nc) is reused by every ic step and should stay in L2 too
//    when it is reused (M > mc); nc is sized like mc.
// The cache sizes are Zen 5's (48 KB L1d, 1 MB L2 per core); on a CPU with smaller caches
// the blocks spill one level but the results are the same. Measured here, the rate is flat
// (within the +-3 % noise) for kc from 128 to 384 and A / B blocks from 128 KB to 512 KB
// once packing is fast: what mattered was packing (pack.hpp) and the register tile.
//
// Determinism: kc depends on k only (never on the thread count or the part of C a thread
// owns), and every element of C is produced by one micro-kernel tile that sums its kc
// block in k order, so a result does not depend on how C is split between threads.

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::gemm_detail {

/// Vector registers of Arch: 32 on AVX-512 and AArch64 NEON, 16 on SSE / AVX / ARMv7.
template <class Arch>
inline constexpr std::size_t vector_registers =
    std::is_base_of_v<xsimd::avx512f, Arch> || std::is_base_of_v<xsimd::neon64, Arch> ? 32 : 16;

/// The register tile of the micro-kernel for T on Arch: mr rows x nr = nv batches.
/// 8 x 2 batches (16 accumulators) with 32 registers, 6 x 2 (12) with 16: enough
/// independent FMA chains to cover latency x throughput (Zen 5: 4 cycles x 2 pipes = 8),
/// one broadcast of A feeds nv FMAs, and mr = 8 divides the usual channel counts
/// (32, 64, 128) so conv GEMMs have no ragged row tiles.
template <class T, class Arch>
struct tile {
  static constexpr std::size_t lanes = simd::batch<T, Arch>::size;
  static constexpr std::size_t nv = 2;
  static constexpr std::size_t nr = nv * lanes;
  static constexpr std::size_t mr = vector_registers<Arch> >= 32 ? 8 : 6;
};

/// Per-core cache capacities the blocks are sized for (Zen 5).
struct cache_sizes {
  static constexpr std::size_t l1 = 48 * 1024;
  static constexpr std::size_t l2 = 1024 * 1024;
};

/// Block sizes of one GEMM: mc, nc are multiples of mr, nr; kc is the k step.
struct blocking {
  std::size_t mc, kc, nc;
};

inline constexpr std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }
inline constexpr std::size_t round_up(std::size_t a, std::size_t b) { return ceil_div(a, b) * b; }

/// The largest block <= max_block (a multiple of `multiple`) that cuts `total` into equal
/// parts: 300 with max 256 gives 152 (two blocks of 152 and 148), not 256 + 44.
inline constexpr std::size_t balanced_block(std::size_t total, std::size_t max_block, std::size_t multiple) {
  const std::size_t blocks = ceil_div(std::max<std::size_t>(total, 1), max_block);
  return std::min(max_block, round_up(ceil_div(std::max<std::size_t>(total, 1), blocks), multiple));
}

/// Blocks for an m x n x k product (see the top of this file).
template <class T, class Arch>
blocking choose_blocking(std::size_t m, std::size_t n, std::size_t k) {
  using t = tile<T, Arch>;
  // B panel in half of L1, at most 512 deep (k steps beyond that gain nothing).
  const std::size_t kc_max = std::min<std::size_t>(512, cache_sizes::l1 / 2 / (t::nr * sizeof(T)));
  const std::size_t kc = balanced_block(k, kc_max, 1);
  // A block and B block in about half of L2 each.
  const std::size_t mc_max = std::max(t::mr, cache_sizes::l2 / 2 / (kc * sizeof(T)) / t::mr * t::mr);
  const std::size_t nc_max = std::max(t::nr, cache_sizes::l2 / 2 / (kc * sizeof(T)) / t::nr * t::nr);
  return {balanced_block(m, mc_max, t::mr), kc, balanced_block(n, nc_max, t::nr)};
}

}  // namespace xquant::kernels::gemm_detail
XQUANT_SIMD_END
