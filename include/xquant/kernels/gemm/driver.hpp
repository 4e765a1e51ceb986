#pragma once
// The blocked GEMM loops (blocking.hpp explains the block sizes) and the thread split.
//
// Threads split C into contiguous ranges of whole column tiles (or row tiles when C has
// more row tiles than column tiles); each thread runs the serial loops on its range with
// its own packing buffers. The k blocking is the same for every range and every element of
// C is summed by one micro-kernel in k order, so C is bitwise the same for any split.

#include <algorithm>
#include <cstddef>

#include "xquant/core/parallel.hpp"
#include "xquant/kernels/gemm/blocking.hpp"
#include "xquant/kernels/gemm/microkernel.hpp"
#include "xquant/kernels/gemm/pack.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::gemm_detail {

/// The arguments of one kernels::gemm call.
template <class T>
struct problem {
  view<T> a, b;  // op(A), op(B)
  std::size_t m, n, k;
  T alpha, beta;
  T* c;
  std::size_t ldc;
};

/// A half-open range of rows or columns of C.
struct range {
  std::size_t begin, end;
  std::size_t size() const { return end - begin; }
};

/// One MR x NR tile of C. An edge tile (rows x cols smaller) goes through an aligned copy
/// on the stack so that the micro-kernel, with the same arithmetic, touches only C's valid
/// elements (and does not read C when the epilogue does not); an edge tile at most one
/// batch wide runs the one-batch kernel (half the work of a full tile).
template <class Arch, class T>
void tile_step(std::size_t kc, const T* a, const T* b, T* c, std::size_t ldc, std::size_t rows, std::size_t cols,
               epilogue<T> e) {
  using t = tile<T, Arch>;
  if (rows == t::mr && cols == t::nr) {
    micro_kernel<Arch, t::mr, t::nv>(kc, a, b, c, ldc, e);
    return;
  }
  alignas(64) T buf[t::mr * t::nr] = {};
  if (e.read_c)
    for (std::size_t i = 0; i < rows; ++i) std::copy_n(c + i * ldc, cols, buf + i * t::nr);
  if (cols <= t::lanes) {
    micro_kernel<Arch, t::mr, 1, t::nv>(kc, a, b, buf, t::nr, e);
  } else {
    micro_kernel<Arch, t::mr, t::nv>(kc, a, b, buf, t::nr, e);
  }
  for (std::size_t i = 0; i < rows; ++i) std::copy_n(buf + i * t::nr, cols, c + i * ldc);
}

/// One full-width tile (NR columns, rows <= MR) with B read in place (row_b); rows < MR
/// goes through a buffer as in tile_step.
template <class Arch, class T>
void tile_step_in_place(std::size_t kc, const T* a, row_b<T> b, T* c, std::size_t ldc, std::size_t rows,
                        epilogue<T> e) {
  using t = tile<T, Arch>;
  if (rows == t::mr) {
    micro_kernel_on<Arch, t::mr, t::nv>(kc, a, b, c, ldc, e);
    return;
  }
  alignas(64) T buf[t::mr * t::nr] = {};
  if (e.read_c)
    for (std::size_t i = 0; i < rows; ++i) std::copy_n(c + i * ldc, t::nr, buf + i * t::nr);
  micro_kernel_on<Arch, t::mr, t::nv>(kc, a, b, buf, t::nr, e);
  for (std::size_t i = 0; i < rows; ++i) std::copy_n(buf + i * t::nr, t::nr, c + i * ldc);
}

/// C[ic.., jc..] (mc x nc) += the product of a packed A block and a packed B block.
template <class Arch, class T>
void macro_kernel(std::size_t mc, std::size_t nc, std::size_t kc, const T* a, const T* b, T* c, std::size_t ldc,
                  epilogue<T> e) {
  using t = tile<T, Arch>;
  for (std::size_t j = 0; j < nc; j += t::nr) {
    const T* b_panel = b + j * kc;
    for (std::size_t i = 0; i < mc; i += t::mr) {
      tile_step<Arch>(kc, a + i * kc, b_panel, c + i * ldc + j, ldc, std::min(t::mr, mc - i), std::min(t::nr, nc - j),
                      e);
    }
  }
}

/// run_blocks when all rows fit in one A block (rows.size() <= mc, the usual case for the
/// conv GEMMs: M is a channel count). A is packed once per k block. When the rows of op(B)
/// are contiguous (B not transposed, e.g. an image or implicit im2col rows), full-width
/// column tiles read B in place (row_b): with few row tiles to share a packed panel,
/// packing would copy every element of B once to read it M / MR times. Otherwise, and for
/// the last narrow column tile, B is packed one panel at a time, each panel used by every
/// row tile right after it is packed, while it is in L1. Same arithmetic, same bits.
template <class Arch, class T>
void run_blocks_one_row_block(const problem<T>& g, const blocking& bl, range rows, range cols) {
  using t = tile<T, Arch>;
  T* a_buf = scratch<T, 0>(round_up(rows.size(), t::mr) * bl.kc);
  T* b_buf = scratch<T, 1>(t::nr * bl.kc);
  const bool in_place = g.b.cols.unit();
  const T** b_rows = in_place ? scratch<const T*, 2>(bl.kc) : nullptr;
  for (std::size_t pc = 0; pc < g.k; pc += bl.kc) {
    const std::size_t kc = std::min(bl.kc, g.k - pc);
    const epilogue<T> e{g.alpha, pc == 0 ? g.beta : T(1), pc > 0 || g.beta != T(0)};
    pack_a<Arch, t::mr>(g.a, rows.begin, rows.size(), pc, kc, a_buf);
    if (in_place)
      for (std::size_t p = 0; p < kc; ++p) b_rows[p] = g.b.data + g.b.rows.at(pc + p);
    for (std::size_t j = cols.begin; j < cols.end; j += t::nr) {
      const std::size_t nr = std::min(t::nr, cols.end - j);
      T* c = g.c + rows.begin * g.ldc + j;
      if (in_place && nr == t::nr) {
        for (std::size_t i = 0; i < rows.size(); i += t::mr) {
          tile_step_in_place<Arch>(kc, a_buf + i * kc, row_b<T>{b_rows, j}, c + i * g.ldc, g.ldc,
                                   std::min(t::mr, rows.size() - i), e);
        }
        continue;
      }
      pack_b<Arch, t::nr>(g.b, pc, kc, j, nr, b_buf);
      macro_kernel<Arch>(rows.size(), nr, kc, a_buf, b_buf, c, g.ldc, e);
    }
  }
}

/// The serial blocked loops over the rows x cols part of C.
template <class Arch, class T>
void run_blocks(const problem<T>& g, const blocking& bl, range rows, range cols) {
  if (rows.size() <= bl.mc) return run_blocks_one_row_block<Arch>(g, bl, rows, cols);
  using t = tile<T, Arch>;
  T* a_buf = scratch<T, 0>(round_up(std::min(bl.mc, rows.size()), t::mr) * bl.kc);
  T* b_buf = scratch<T, 1>(round_up(std::min(bl.nc, cols.size()), t::nr) * bl.kc);
  for (std::size_t jc = cols.begin; jc < cols.end; jc += bl.nc) {
    const std::size_t nc = std::min(bl.nc, cols.end - jc);
    for (std::size_t pc = 0; pc < g.k; pc += bl.kc) {
      const std::size_t kc = std::min(bl.kc, g.k - pc);
      pack_b<Arch, t::nr>(g.b, pc, kc, jc, nc, b_buf);
      const epilogue<T> e{g.alpha, pc == 0 ? g.beta : T(1), pc > 0 || g.beta != T(0)};
      for (std::size_t ic = rows.begin; ic < rows.end; ic += bl.mc) {
        const std::size_t mc = std::min(bl.mc, rows.end - ic);
        pack_a<Arch, t::mr>(g.a, ic, mc, pc, kc, a_buf);
        macro_kernel<Arch>(mc, nc, kc, a_buf, b_buf, g.c + ic * g.ldc + jc, g.ldc, e);
      }
    }
  }
}

/// C = alpha * 0 + beta * C when k == 0 (no product to form; C unread when beta == 0).
template <class T>
void scale_c(const problem<T>& g) {
  for (std::size_t i = 0; i < g.m; ++i) {
    T* row = g.c + i * g.ldc;
    for (std::size_t j = 0; j < g.n; ++j) row[j] = g.beta == T(0) ? g.alpha * T(0) : g.alpha * T(0) + g.beta * row[j];
  }
}

/// The whole product: serial on the calling thread when `pool` is null or has one thread,
/// otherwise cut into pool->size() ranges of tiles run by pool->parallel_for. The calling
/// thread must not itself be running a chunk of `pool` (thread_pool is not reentrant).
template <class Arch, class T>
void run(const problem<T>& g, thread_pool* pool = nullptr) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) return scale_c(g);
  using t = tile<T, Arch>;
  const blocking bl = choose_blocking<T, Arch>(g.m, g.n, g.k);
  const std::size_t row_tiles = ceil_div(g.m, t::mr), col_tiles = ceil_div(g.n, t::nr);
  if (!pool || pool->size() == 1 || std::max(row_tiles, col_tiles) < 2) {
    run_blocks<Arch>(g, bl, {0, g.m}, {0, g.n});
  } else if (col_tiles >= row_tiles) {  // one range per thread: each range packs A (or B) again
    pool->parallel_for(
        col_tiles, 1,
        [&](std::size_t begin, std::size_t end) {
          run_blocks<Arch>(g, bl, {0, g.m}, {begin * t::nr, std::min(end * t::nr, g.n)});
        },
        pool->size());
  } else {
    pool->parallel_for(
        row_tiles, 1,
        [&](std::size_t begin, std::size_t end) {
          run_blocks<Arch>(g, bl, {begin * t::mr, std::min(end * t::mr, g.m)}, {0, g.n});
        },
        pool->size());
  }
}

}  // namespace xquant::kernels::gemm_detail
XQUANT_SIMD_END
