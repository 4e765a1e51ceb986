#pragma once
// The loops around an int8 micro-kernel: panel by panel (64 columns of C), column tile by
// column tile inside the panel, and down all rows of A for each column tile, so the tile's
// packed W (K x tile width: 36 KB for K = 576 and 64 columns) stays in L1 while the rows of
// A stream past it. Every tile runs the whole K in registers (no k blocking: even K = 4608,
// a 3 x 3 x 512 convolution, keeps a 64-column W panel of 288 KB in L2), hands its int32
// sums to the epilogue through a 1.75 KB buffer on the caller's stack (gemm_state), and the call
// needs no caller scratch; ragged edges (fewer rows or vectors than the full tile) run the
// same kernel instantiated for the smaller tile.
//
// A row range of C depends only on the same rows of A, so a caller may split M over threads
// by calling gemm on row blocks (A + r0 * lda, C + r0 * ldc).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "xquant/kernels/int8/gemm/pack.hpp"
#include "xquant/kernels/int8/gemm/tile.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8::gemm_detail {

/// The most rows Kernel::rows_for gives tiles whose rows are found as Rows says (a plain
/// matrix: its fixed height; no taller tile is compiled).
template <class Kernel, tile_rows Rows>
inline constexpr std::size_t most_rows = Rows == tile_rows::matrix ? Kernel::rows_for(Kernel::nv, 0, 0) : Kernel::mr;

/// Runs Kernel::tile<rows, vectors, Rows> for run-time rows <= MR, vectors <= NV. (Rows
/// first, then vectors: in this order GCC 12 inlines the plain-matrix 6 x 1 tile into run;
/// vectors first, it did not, and a GEMM of M = 6272, K = N = 16, mobilenet's 1x1 16 -> 16,
/// ran 2.1 -> 2.6 us per 784 rows.)
template <class Kernel, tile_rows Rows, std::size_t MR = most_rows<Kernel, Rows>, std::size_t NV = Kernel::nv>
void tile_of_size(std::size_t rows, std::size_t vectors, const tile_job& job,
                  const panel_epilogue<typename Kernel::requant_arch>& e) noexcept {
  if constexpr (MR > 1) {
    if (rows < MR) return tile_of_size<Kernel, Rows, MR - 1, NV>(rows, vectors, job, e);
  }
  if constexpr (NV > 1) {
    if (vectors < NV) return tile_of_size<Kernel, Rows, MR, NV - 1>(rows, vectors, job, e);
  }
  Kernel::template tile<MR, NV, Rows>(job, e);
}

/// The epilogue constants of one panel at a time, and the buffer tiles hand their sums over in.
template <class Kernel>
struct gemm_state {
  panel_epilogue<typename Kernel::requant_arch> e;
  std::size_t prepared = ~std::size_t{0};  // the panel e holds
  alignas(64) std::int32_t sums[Kernel::mr * Kernel::nv * Kernel::vector_cols];
};

/// C = requantize(bias + A W^T) with Kernel (see reference::int8::gemm), A's rows as `a`
/// says (a plain matrix or an implicit convolution's, tile.hpp); trusted arguments. The
/// epilogue constants are prepared only for a panel other than the one st holds.
template <class Kernel>
void run(std::size_t m, const a_rows& a, const packed_weights& w, const std::int32_t* bias,
         const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc, gemm_state<Kernel>& st) noexcept {
  constexpr std::size_t vector_cols = Kernel::vector_cols;
  const std::size_t tile_cols = Kernel::tile_vectors(a.out_w, w.n()) * vector_cols;
  static_assert(vector_cols == panel_epilogue<typename Kernel::requant_arch>::width);
  static_assert(Kernel::mr <= max_tile_rows);
  if (m == 0) return;
  const auto& e = st.e;
  for (std::size_t p = 0; p < w.panels(); ++p) {
    const std::size_t col0 = p * panel_cols, width = w.panel_width(p);
    const std::size_t cols = std::min(panel_cols, w.n() - col0);
    if (p != st.prepared) st.e.prepare(bias, rq, w.acc_bounds().data(), col0, cols), st.prepared = p;
    for (std::size_t c0 = 0; c0 < cols; c0 += tile_cols) {
      tile_job job{};
      job.lda = a.lda;
      job.segments = a.segments;
      job.segment_len = a.segment_len;
      job.segment_stride = a.segment_stride;
      job.k = w.k();
      job.w = w.panel(p) + c0 * k_group;
      job.w_stride = width * k_group;
      job.ldc = ldc;
      job.cols = std::min(tile_cols, cols - c0);
      job.v0 = c0 / vector_cols;
      job.sums = st.sums;
      const std::size_t vectors = ceil_div(job.cols, vector_cols);  // <= nv; padding vectors skipped
      const std::size_t mr = Kernel::rows_for(vectors, a.out_w, w.k());
      // A plain matrix's full tiles go to the kernel in one run (tile_job::count).
      for (std::size_t r0 = 0; r0 < m; r0 += job.count * mr) {
        const std::size_t rows = std::min(mr, m - r0);
        job.c = c + r0 * ldc + col0 + c0;
        job.count = 1;
        if (a.out_w == 0) {
          job.a = a.base + r0 * a.lda;
          if (rows == mr) job.count = (m - r0) / mr;
          job.next = a.base + std::min(r0 + job.count * rows, m - 1) * a.lda;
          tile_of_size<Kernel, tile_rows::matrix>(rows, vectors, job, e);
        } else if (Kernel::strided_runs && r0 % a.out_w + rows <= a.out_w) {  // inside one output row
          job.a = a.row(r0);
          if constexpr (Kernel::strided_runs) tile_of_size<Kernel, tile_rows::strided_runs>(rows, vectors, job, e);
        } else {
          a.fill(r0, rows, job.row);
          tile_of_size<Kernel, tile_rows::indirect>(rows, vectors, job, e);
        }
      }
    }
  }
}

/// For each of `images` GEMMs that share W, run(m, rows_of(n), ...) into c + n * c_stride
/// (rows_of is called once per n, in order, before A_n is read). One epilogue preparation
/// per call for a single-panel W (N <= 64): its constants are the same for every image (per
/// image, preparing them was 1-3 % of resnet's 16-channel convolutions).
template <class Kernel, class RowsOf>
void run_images(std::size_t images, std::size_t m, RowsOf rows_of, const packed_weights& w, const std::int32_t* bias,
                const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc, std::size_t c_stride) noexcept {
  gemm_state<Kernel> st;
  for (std::size_t n = 0; n < images; ++n) run<Kernel>(m, rows_of(n), w, bias, rq, c + n * c_stride, ldc, st);
}

}  // namespace xquant::kernels::int8::gemm_detail
XQUANT_SIMD_END
