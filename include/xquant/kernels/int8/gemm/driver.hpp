#pragma once
// The loops around an int8 micro-kernel: panel by panel (64 columns of C), column tile by
// column tile inside the panel, and down all rows of A for each column tile, so the tile's
// packed W (K x tile width: 36 KB for K = 576 and 64 columns) stays in L1 while the rows of
// A stream past it. Every tile runs the whole K in registers (no k blocking: even K = 4608,
// a 3 x 3 x 512 convolution, keeps a 64-column W panel of 288 KB in L2), hands its int32
// sums to the epilogue through a 1.5 KB buffer on this function's stack, and the call
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

/// Runs Kernel::tile<rows, NV, Rows> for run-time rows <= MR.
template <class Kernel, tile_rows Rows, std::size_t MR, std::size_t NV>
void tile_of_height(std::size_t rows, const tile_job& job,
                    const panel_epilogue<typename Kernel::requant_arch>& e) noexcept {
  if constexpr (MR > 1) {
    if (rows < MR) return tile_of_height<Kernel, Rows, MR - 1, NV>(rows, job, e);
  }
  Kernel::template tile<MR, NV, Rows>(job, e);
}

/// Runs Kernel::tile<rows, vectors, Rows> for run-time rows <= Kernel::mr, vectors <= NV.
template <class Kernel, tile_rows Rows, std::size_t NV = Kernel::nv>
void tile_of_size(std::size_t rows, std::size_t vectors, const tile_job& job,
                  const panel_epilogue<typename Kernel::requant_arch>& e) noexcept {
  if constexpr (NV > 1) {
    if (vectors < NV) return tile_of_size<Kernel, Rows, NV - 1>(rows, vectors, job, e);
  }
  tile_of_height<Kernel, Rows, Kernel::mr, NV>(rows, job, e);
}

/// C = requantize(bias + A W^T) with Kernel (see reference::int8::gemm), A's rows as `a`
/// says (a plain matrix or an implicit convolution's, tile.hpp); trusted arguments.
template <class Kernel>
void run(std::size_t m, const a_rows& a, const packed_weights& w, const std::int32_t* bias,
         const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc) noexcept {
  constexpr std::size_t vector_cols = Kernel::vector_cols, tile_cols = Kernel::nv * vector_cols;
  static_assert(vector_cols == panel_epilogue<typename Kernel::requant_arch>::width);
  static_assert(Kernel::mr <= max_tile_rows);
  if (m == 0) return;
  panel_epilogue<typename Kernel::requant_arch> e;
  alignas(64) std::int32_t sums[Kernel::mr * tile_cols];
  for (std::size_t p = 0; p < w.panels(); ++p) {
    const std::size_t col0 = p * panel_cols, width = w.panel_width(p);
    const std::size_t cols = std::min(panel_cols, w.n() - col0);
    e.prepare(bias, rq, w.acc_bounds().data(), col0, cols);
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
      job.sums = sums;
      const std::size_t vectors = ceil_div(job.cols, vector_cols);  // <= nv; padding vectors skipped
      const std::size_t mr = Kernel::rows_for(vectors, a.out_w, w.k());
      for (std::size_t r0 = 0; r0 < m; r0 += mr) {
        const std::size_t rows = std::min(mr, m - r0);
        job.c = c + r0 * ldc + col0 + c0;
        if (a.out_w == 0) {
          job.a = a.base + r0 * a.lda;
          job.next = a.base + std::min(r0 + rows, m - 1) * a.lda;
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

/// The same for a plain matrix A (row r at a + r * lda).
template <class Kernel>
void run(std::size_t m, const std::uint8_t* a, std::size_t lda, const packed_weights& w, const std::int32_t* bias,
         const requant_channel_args& rq, std::uint8_t* c, std::size_t ldc) noexcept {
  run<Kernel>(m, a_rows::matrix(a, lda, w.k()), w, bias, rq, c, ldc);
}

}  // namespace xquant::kernels::int8::gemm_detail
XQUANT_SIMD_END
