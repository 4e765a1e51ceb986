#pragma once
// What every int8 GEMM micro-kernel shares: the description of one tile, how A's bytes are
// read per k group, and the fused epilogue (bias, per-channel fixed-point requantization,
// clamp, narrowing store) applied to a tile's int32 sums right after its k loop, while they
// are in L1 (job.sums, 1.75 KB at most), before anything else is computed.
//
// Epilogue. The per-channel constants are derived once per panel of 64 columns and reused
// by every row tile of the panel. Where the packed weights' accumulator bounds allow it
// (always, for real layers) they are the float-folded form of requant_fold.hpp on archs
// with a hardware FMA: an int32 bias add, a conversion and an FMA per lane, clamped as a
// float whose low byte is the output (detail::float_folded_lanes; resnet and mobilenet,
// batch 256: 4 % and 7 % more images/s than the form below). Else the folded form: bias,
// rounding and zero point in one 64-bit multiply-add and shift per lane
// (detail::folded_lanes, about half the instructions of the unfolded one; on mobilenet,
// whose 1x1 layers have K = 16-144, the epilogue was a third of the int8 time). Otherwise
// they are those of kernels/requantize.hpp
// (fixed_lanes: multipliers, shifts, rounding biases, clamp limits), from copies of the
// channel arrays padded to the panel width, and the sums take reference::requantize_fixed's
// own path (detail::fixed_batch). All three equal the reference bit for bit; then
// simd::store_clamped (the float form: detail::float_folded_store). A vector that runs past
// the last column goes through a small buffer, so C's columns n .. ldc-1 are never written.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "xquant/kernels/gemm/microkernel.hpp"
#include "xquant/kernels/int8/gemm/pack.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8::gemm_detail {

/// Where the rows of A are. A plain GEMM's row r is at base + r * lda, K contiguous bytes.
/// An implicit convolution (kernels/int8/conv.hpp) reads its im2col matrix in place from a
/// padded NHWC image instead of unfolding it: the row of output pixel (oh, ow), r = oh * OW
/// + ow, is KH segments of KW * C contiguous bytes (one kernel row's taps are adjacent
/// pixels), segment s at row(r) + s * segment_stride, row(r) = base + oh * row_stride + ow
/// * lda. Segments hold whole k groups (KW * C % 4 == 0), so a group never straddles two.
struct a_rows {
  const std::uint8_t* base = nullptr;
  std::size_t lda = 0;         ///< plain: row stride; convolution: bytes per output column step
  std::size_t out_w = 0;       ///< convolution: output row length (0: a plain matrix)
  std::size_t row_stride = 0;  ///< convolution: bytes per output row step
  std::size_t segments = 1, segment_len = 0, segment_stride = 0;

  static a_rows matrix(const std::uint8_t* a, std::size_t lda, std::size_t k) noexcept {
    a_rows r;
    r.base = a;
    r.lda = lda;
    r.segment_len = k;
    return r;
  }
  const std::uint8_t* row(std::size_t r) const noexcept {
    if (out_w == 0) return base + r * lda;
    return base + r / out_w * row_stride + r % out_w * lda;
  }
  /// Rows r0 .. r0 + count - 1 into out (one division, then steps).
  void fill(std::size_t r0, std::size_t count, const std::uint8_t** out) const noexcept {
    std::size_t ow = r0 % out_w;
    const std::uint8_t* row_start = base + r0 / out_w * row_stride;
    for (std::size_t i = 0; i < count; ++i) {
      out[i] = row_start + ow * lda;
      if (++ow == out_w) ow = 0, row_start += row_stride;
    }
  }
};

/// The largest tile height of any micro-kernel (row pointers a tile_job carries).
inline constexpr std::size_t max_tile_rows = 7;

/// The most accumulators a kernel hands to panel_epilogue::store_float_registers (as
/// arguments: 8 vector registers carry them, one is left to spare).
inline constexpr std::size_t max_register_accumulators = 7;

/// How a tile finds its rows of A (the micro-kernels have a loop for each).
enum class tile_rows {
  matrix,        ///< a plain matrix: row i at a + i * lda, K contiguous bytes
  strided_runs,  ///< a convolution tile inside one output row: runs from a + i * lda
  indirect       ///< a convolution tile across output rows: runs from row[i]
};

/// One micro-kernel call: `rows` (a template argument of the kernel) rows of A, the tile's
/// columns of one panel from `w`, the result at `c`.
struct tile_job {
  const std::uint8_t* a;  ///< matrix, strided_runs: the tile's first row; row i at a + i * lda
  std::size_t lda;
  const std::uint8_t* next;                           ///< matrix: the next tile's first row (prefetched)
  const std::uint8_t* row[max_tile_rows];             ///< indirect: the tile's rows
  std::size_t segments, segment_len, segment_stride;  ///< a convolution's runs of each row (a_rows)
  std::size_t k;                                      ///< K = segments * segment_len
  const std::int8_t* w;  ///< group 0 of the tile's first column in the packed panel
  std::size_t w_stride;  ///< bytes from one k group to the next (4 * panel width)
  std::uint8_t* c;       ///< C[row 0][first column], row stride ldc
  std::size_t ldc;
  std::size_t cols;    ///< valid columns of the tile (the rest are padding)
  /// matrix: how many tiles of the same shape to run, tile t at rows a + t * MR * lda, c + t
  /// * MR * ldc (for_each_tile; a call per tile, with its loads of the job's fields, cost as
  /// much as a K = 16 tile's multiply-adds); convolutions: 1
  std::size_t count = 1;
  std::size_t v0;      ///< the tile's first vector in the panel's epilogue constants
  std::int32_t* sums;  ///< 64-byte aligned room for the tile's int32 results (store_tile)
};

/// The epilogue constants of one panel for int32 batches of RA.
template <class RA>
struct panel_epilogue {
  using i32 = simd::batch<std::int32_t, RA>;
  static constexpr std::size_t width = i32::size;
  static constexpr std::size_t vectors = panel_cols / width;
  static_assert(panel_granule % width == 0, "a panel's padding granule must hold whole vectors");

  /// Folded (requant_fold.hpp; bias, rounding and zero point in one multiply-add and shift)
  /// when every column of the panel folds for the weights' accumulator bounds, which is
  /// the rule for real layers; otherwise the unfolded fixed-point constants.
  bool folded = false;
  kernels::detail::folded_channels<panel_cols> folds;
  /// Float-folded (requant_fold.hpp, fold_float_requant: the same numbers from a conversion
  /// and an FMA) where the arch has a hardware FMA and every column of the panel qualifies,
  /// which again is the rule for real layers; it then takes precedence over `folded`.
  static constexpr bool float_capable = simd::has_fused_multiply_add<RA>;
  bool float_folded = false;
  kernels::detail::float_folded_channels<panel_cols> float_folds;
  alignas(64) std::int32_t bias[panel_cols];
  kernels::detail::fixed_lanes<RA, kernels::detail::u64<RA>> lanes[vectors];
  int qmin, qmax;

  /// Constants for columns col0 .. col0 + cols - 1 of C (bias may be null: zeros; bound:
  /// packed_weights::acc_bounds). Padding channels get a zero bias and the valid scale 2^-1
  /// (folded: the constants 0 * acc + 0); their results are never stored.
  void prepare(const std::int32_t* b, const requant_channel_args& rq, const std::int64_t* bound, std::size_t col0,
               std::size_t cols) noexcept {
    qmin = rq.qmin;
    qmax = rq.qmax;
    if constexpr (float_capable) {
      float_folded = bound != nullptr && qmin >= 0 && qmax <= 255 && float_folds.fold(rq, b, bound, col0, cols);
      if (float_folded) return;
    }
    folded = bound != nullptr && folds.fold(rq, b, bound, col0, cols);
    if (folded) return;
    alignas(64) std::int32_t multiplier[panel_cols], shift[panel_cols];
    for (std::size_t c = 0; c < panel_cols; ++c) {
      const bool valid = c < cols;
      bias[c] = valid && b ? b[col0 + c] : 0;
      multiplier[c] = valid ? rq.multiplier[col0 + c] : std::int32_t{1} << 30;
      shift[c] = valid ? rq.shift[col0 + c] : 31;
    }
    requant_channel_args padded = rq;
    padded.multiplier = multiplier;
    padded.shift = shift;
    for (std::size_t v = 0; v * width < cols; ++v) lanes[v] = kernels::detail::fixed_lanes_at<RA>(padded, v * width);
  }

  /// Requantizes and stores a tile: acc holds MR x NV batches (row major, aligned), the
  /// sums of the tile's columns (job.cols of them valid) before the bias. The kernels hand
  /// their accumulators over through job.sums (but see store_float_registers; in the
  /// caller's frame, not the kernel's:
  /// GCC 12 treats a local array that the accumulators are finally stored to as their home
  /// and stores to it inside the k loop) rather than calling store per batch (an
  /// out-of-line call with accumulators live spills them across the k loop). A template on
  /// the tile's shape: the run-time-shaped version got inlined into some tiles and made
  /// GCC spill their accumulators (measured: N = 64, K = 144 at 40 % of the speed). Vector
  /// by vector, its constants are copied to locals once for all rows: the uint8 stores may
  /// alias anything, so constants read through `this` would be reloaded after each store.
  template <std::size_t MR, std::size_t NV>
  [[gnu::noinline]] void store_tile(const std::int32_t* acc, const tile_job& job) const noexcept {
    if constexpr (float_capable) {
      if (float_folded) return store_float<MR, NV>(acc, job);
    }
    const int lo = qmin, hi = qmax;
    const std::size_t ldc = job.ldc;
    // Full tiles whose vectors lie in C as runs of 4 (a row of a 64-column tile, or any
    // tile of a layer whose C rows are exactly the tile's width: N = 16, 32) are narrowed
    // and stored 4 vectors at a time (simd::store_clamped_u8x4).
    if (folded && job.cols == NV * width && (NV == 4 || ldc == NV * width)) return store_grouped<MR, NV>(acc, job);
    for (std::size_t j = 0; j < NV && j * width < job.cols; ++j) {
      const std::size_t valid = job.cols - j * width, v = job.v0 + j;
      const std::int32_t* sums = acc + j * width;
      std::uint8_t* out = job.c + j * width;
      if (folded) {
        const kernels::detail::folded_lanes<RA> k(folds, v * width);  // by value: in registers
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i)
          store_row(out + i * ldc, k(i32::load_aligned(sums + i * NV * width)), valid, lo, hi);
      } else {
        const auto k = lanes[v];
        const i32 b = i32::load_aligned(bias + v * width);
        for (std::size_t i = 0; i < MR; ++i) {
          store_row(out + i * ldc, kernels::detail::fixed_batch<true>(i32::load_aligned(sums + i * NV * width) + b, k),
                    valid, lo, hi);
        }
      }
    }
  }

  /// store_tile's float-folded path for a full tile one vector wide whose accumulators (row
  /// i's the i-th) come as arguments, in registers (the x86-64 calling convention passes
  /// up to 8 vector arguments in registers), so the kernel stores nothing to hand them
  /// over. The caller checks float_folded and job.cols == width. Why: on the Zen 4 of the
  /// README's figures a zmm store issues every other cycle, and the 7 stores of a 7 x 1
  /// tile's sums and their reloads were most of its epilogue (resnet's 3x3 16 -> 16: 9.1 ->
  /// 8.4-8.7 us per image, as code placement falls; its one-channel stem 2.37 -> 1.8).
  /// Only 7 x 1 tiles: 14 accumulators (7 x 2 tiles, 6 of them passed on the stack) made
  /// every convolution measured 6-20 % slower, and wide tiles became 7 x 1 ones instead
  /// (tile_vectors).
  template <class... Regs>
  [[gnu::noinline]] void store_float_registers(const tile_job& job, Regs... acc) const noexcept {
    static_assert(sizeof...(Regs) <= max_register_accumulators);
    const kernels::detail::float_folded_store<RA> store(qmin, qmax);
    const kernels::detail::float_folded_lanes<RA> k(float_folds, job.v0 * width);
    std::uint8_t* out = job.c;  // (locals: job's fields would be reloaded after each uint8 store)
    const std::size_t ldc = job.ldc;
    const auto row = [&](i32 sums) XQUANT_SIMD_INLINE_LAMBDA {
      store(out, k(sums));
      out += ldc;
    };
    (row(i32(acc)), ...);
  }

 private:
  /// The float-folded epilogue of a tile: per vector, an add, a conversion, an FMA, a float
  /// clamp and a truncating narrow (~6 instructions per 16 outputs on AVX-512 against the
  /// folded form's ~11).
  template <std::size_t MR, std::size_t NV>
  void store_float(const std::int32_t* acc, const tile_job& job) const noexcept {
    const kernels::detail::float_folded_store<RA> store(qmin, qmax);
    const std::size_t ldc = job.ldc;
    if (job.cols == NV * width) {  // a full tile: no lane counts
      using lanes = kernels::detail::float_folded_lanes<RA>;
      lanes k[NV];
#pragma GCC unroll 4
      for (std::size_t j = 0; j < NV; ++j) k[j] = lanes(float_folds, (job.v0 + j) * width);
#pragma GCC unroll 8
      for (std::size_t i = 0; i < MR; ++i) {
#pragma GCC unroll 4
        for (std::size_t j = 0; j < NV; ++j)
          store(job.c + i * ldc + j * width, k[j](i32::load_aligned(acc + (i * NV + j) * width)));
      }
      return;
    }
    for (std::size_t j = 0; j < NV && j * width < job.cols; ++j) {
      const std::size_t valid = job.cols - j * width;
      const kernels::detail::float_folded_lanes<RA> k(float_folds, (job.v0 + j) * width);  // by value
      const std::int32_t* sums = acc + j * width;
      std::uint8_t* out = job.c + j * width;
#pragma GCC unroll 8
      for (std::size_t i = 0; i < MR; ++i) store(out + i * ldc, k(i32::load_aligned(sums + i * NV * width)), valid);
    }
  }

  /// A full folded tile, its MR * NV vectors in row-major order f = i * NV + j taken 4 at a
  /// time: 4 consecutive f are 64 contiguous bytes of C when NV == 4 (one row) or when C's
  /// rows are the tile's width (ldc == NV * width: the whole tile is contiguous).
  template <std::size_t MR, std::size_t NV>
  void store_grouped(const std::int32_t* acc, const tile_job& job) const noexcept {
    const int lo = qmin, hi = qmax;
    const std::size_t ldc = job.ldc;
    kernels::detail::folded_lanes<RA> k[NV];
#pragma GCC unroll 4
    for (std::size_t j = 0; j < NV; ++j) k[j] = kernels::detail::folded_lanes<RA>(folds, (job.v0 + j) * width);
    // (Loops, not a lambda: GCC 12 left the lambda out of line, reading the constants
    // through its captures, and the tile ran slower than with single-vector stores.)
    constexpr std::size_t total = MR * NV, groups = total / 4;
#pragma GCC unroll 8
    for (std::size_t g = 0; g < groups; ++g) {
      i32 q[4];
#pragma GCC unroll 4
      for (std::size_t t = 0; t < 4; ++t) {
        const std::size_t f = 4 * g + t, j = f % NV;
        q[t] = k[j](i32::load_aligned(acc + f * width));
      }
      simd::store_clamped_u8x4<RA>(NV == 4 ? job.c + g * ldc : job.c + 4 * g * width, q, lo, hi);
    }
#pragma GCC unroll 4
    for (std::size_t f = 4 * groups; f < total; ++f) {
      const std::size_t j = f % NV;
      simd::store_clamped<std::uint8_t, RA>(job.c + f / NV * ldc + j * width, k[j](i32::load_aligned(acc + f * width)),
                                            lo, hi);
    }
  }

  /// Clamps, narrows and stores the first `valid` lanes of q (all when valid >= width).
  XQUANT_SIMD_INLINE static void store_row(std::uint8_t* out, i32 q, std::size_t valid, int lo, int hi) noexcept {
    if (valid >= width) {
      simd::store_clamped<std::uint8_t, RA>(out, q, lo, hi);
    } else {
      std::uint8_t tmp[panel_cols];  // (not [width]: GCC 12 -Warray-bounds misses valid < width)
      simd::store_clamped<std::uint8_t, RA>(tmp, q, lo, hi);
      std::memcpy(out, tmp, valid);
    }
  }
};

/// Runs body(t) for job.count tiles t of MR rows (tile_job::count): job itself, then the
/// tiles below it; a plain matrix's prefetch target is the next of them, job.next for the
/// last one.
template <std::size_t MR, tile_rows Rows, class Body>
XQUANT_SIMD_INLINE void for_each_tile(const tile_job& job, Body body) noexcept {
  if constexpr (Rows != tile_rows::matrix) {
    body(job);
  } else {
    tile_job t = job;
    for (std::size_t n = job.count; n > 0; --n) {
      t.next = n > 1 ? t.a + MR * t.lda : job.next;
      body(t);
      t.a += MR * t.lda;
      t.c += MR * t.ldc;
    }
  }
}

/// The 4 A bytes of a full k group at p (a0 in the low byte).
inline std::uint32_t group_bytes(const std::uint8_t* p) noexcept {
  std::uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

/// The bytes of the last, partial k group (K % 4 of them) of each of MR rows, zero-extended
/// (A may end right after them; the packed W is zero past K). Gathered before the k loop:
/// a byte loop after it, with the accumulators live, makes GCC spill them in the loop.
template <std::size_t MR>
void gather_tail(const std::uint8_t* a, std::size_t lda, std::size_t k, std::uint32_t (&tail)[MR]) noexcept {
  const std::size_t k0 = k / k_group * k_group;
  for (std::size_t i = 0; i < MR; ++i) {
    tail[i] = 0;
    for (std::size_t p = k0; p < k; ++p) tail[i] |= std::uint32_t{a[i * lda + p]} << (8 * (p - k0));
  }
}


/// Prefetches the A rows of the next row tile while a tile runs its k loop: the call for
/// byte offset p requests the line of row (call count mod rows) at byte p. Called every KS
/// groups, each row's requests advance 4 KS rows < 64 bytes a time, so every line of the
/// next tile's rows is requested during this tile's loop, ~1000 cycles before it is read.
/// The hardware prefetcher alone left the im2col GEMM (M = 3136, K = 576: A is 1.8 MB,
/// read from L3 on a busy machine) at 74 % of the vpdpbusd peak; with this, 88 %.
/// (Addresses past the end of A are only prefetched, never read: uintptr_t arithmetic.)
class next_tile_prefetcher {
 public:
  next_tile_prefetcher(const std::uint8_t* next_tile, std::size_t lda, std::size_t rows) noexcept
      : next_(reinterpret_cast<std::uintptr_t>(next_tile)), lda_(lda), rows_(rows) {}
  void operator()(std::size_t p) noexcept {
    kernels::gemm_detail::prefetch(reinterpret_cast<const void*>(next_ + row_ * lda_ + p));
    row_ = row_ + 1 == rows_ ? 0 : row_ + 1;
  }

 private:
  std::uintptr_t next_;
  std::size_t lda_, rows_, row_ = 0;
};

}  // namespace xquant::kernels::int8::gemm_detail
XQUANT_SIMD_END
