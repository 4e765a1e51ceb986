#pragma once
// Implicit im2col on the zero-padded (phase) grid: the GEMM form used by conv2d for
// convolutions with a kernel larger than 1x1.
//
// Each channel plane of the image is first copied into zero-padded phase planes (the
// layout of the direct depthwise kernel, detail/depthwise.hpp: for strides SH x SW the
// padded plane is split into SH * SW sub-planes of `rows` x `cols`, cols = OW + (KW - 1) / SW,
// followed by `cols` zeros of slack; for stride 1 that is just the padded plane
// [H + 2 PH, W + 2 PW]). Output (oh, ow), computed with row pitch `cols`, sits at column
// i = oh * cols + ow of a grid of N' = OH * cols columns, and its input under tap (kh, kw)
// is element tap(kh, kw) + i of the channel's phase planes: every tap is ONE contiguous run
// of N' elements, with no bounds checks, for any stride. So the im2col matrix
//
//   col'[(c * KH + kh) * KW + kw][i] = PP[c][tap(kh, kw) + i],   i in [0, N')
//
// has rows that are windows of PP: kernels::gemm_indexed reads them in place (row
// offsets c * |PP| + tap, grid_row_offsets) and the matrix is never built. Y' = W * col' is
// the output on the grid; crop_grid drops the cols - OW = (KW - 1) / SW extra columns of
// each row (they read elements of the next sub-plane row or the slack, and only feed
// dropped outputs). The backward pads the image again for dW rather than keep the
// forward's PP: keeping it (7.6 MB per layer of ResNet's first block) measured no faster,
// it goes to memory and back, where padding again reads x into an L2-resident buffer.
//
// Backward. dY' = dY spread onto the grid with zeros in the extra columns, stored with Z =
// max tap offset zeros before and after each channel's run (spread_grid):
//  - dW = dY' * col'^T: gemm_indexed with the same row offsets, transposed (the zero
//    columns of dY' add exact zeros);
//  - dX: sub-plane (a, b) of dPP receives, at element j, w[o][c][kh][kw] * dY'[o][j - d]
//    from every tap with kh % SH = a, kw % SW = b, d = (kh / SH) * cols + kw / SW its offset
//    within the sub-plane. That is again a GEMM with implicit rows, one per phase:
//    dPP_ab = Wt_ab * Z_ab, Wt_ab[c][o * T + t] = w[o][c][tap t of the phase], row (o, t) of
//    Z_ab the window of dY'[o] starting at -d (the Z zeros stand for outputs outside the
//    grid, the zero columns for the dropped ones; a valid output i = j - d never wraps
//    into another row since i % cols + kw / SW < cols). Only the sub-plane rows that hold
//    image pixels are computed; dX += the image part of dPP (unpad_image). This is
//    the transposed convolution as a GEMM of depth O * taps: no dcol' matrix, no col2im.
//
// Cost: the GEMM's N grows from OH * OW to OH * cols (3x3 pad 1 stride 1 on 28x28: +7 %,
// on 7x7: +29 %); conv2d.hpp takes this path only when that is small (use_padded_grid).

#include <algorithm>
#include <cstddef>
#include <vector>

#include "xquant/nn/functional/detail/depthwise.hpp"
#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional::detail {

/// N' = OH * cols, the columns of col', Y' and dY'.
inline std::size_t grid_columns(const phase_planes& pp) { return pp.out_size(); }

/// The elements of one channel of the spread output gradient: Z zeros, N', Z zeros.
inline std::size_t spread_size(const phase_planes& pp) { return pp.out_size() + 2 * pp.max_offset(); }

/// PP = the phase planes of every channel of x [C, H, W], pp.size() elements per channel.
/// Stride 1 (one phase, the padded plane [H + 2 PH, W + 2 PW] then `cols` of slack) writes
/// each element once: the borders are filled, the rows copied.
template <class T>
void pad_image(const T* x, const conv_geometry& g, const phase_planes& pp, T* p) {
  if (g.sh != 1 || g.sw != 1) {
    for (std::size_t c = 0; c < g.c; ++c) pad_plane(x + c * g.in_plane(), g, pp, p + c * pp.size());
    return;
  }
  const std::size_t wp = pp.cols, top = g.ph * wp;  // stride 1: cols = W + 2 PW
  const std::size_t bottom = pp.size() - (g.ph + g.h) * wp;  // bottom padding rows + slack
  for (std::size_t c = 0; c < g.c; ++c) {
    const T* src = x + c * g.in_plane();
    T* dst = p + c * pp.size();
    std::fill(dst, dst + top + g.pw, T(0));  // top rows and the left border of the first row
    dst += top;
    for (std::size_t r = 0; r < g.h; ++r, dst += wp, src += g.w) {
      for (std::size_t i = 0; i < g.w; ++i) dst[g.pw + i] = src[i];
      // the right border of this row and the left border of the next (contiguous)
      std::fill(dst + g.pw + g.w, dst + wp + (r + 1 < g.h ? g.pw : 0), T(0));
    }
    std::fill(dst, dst + bottom, T(0));
  }
}

/// The row offsets of col' for one group: row (c * KH + kh) * KW + kw starts at
/// c * pp.size() + tap(kh, kw) of the group's phase planes (g.kg() entries).
inline std::vector<std::size_t> grid_row_offsets(const conv_geometry& g, const phase_planes& pp) {
  std::vector<std::size_t> offsets;
  offsets.reserve(g.kg());
  for (std::size_t c = 0; c < g.cg(); ++c)
    for (std::size_t kh = 0; kh < g.kh; ++kh)
      for (std::size_t kw = 0; kw < g.kw; ++kw) offsets.push_back(c * pp.size() + pp.tap(kh, kw));
  return offsets;
}

/// One sub-plane (a, b) of dPP as a GEMM (see the top of this file): the sub-plane rows
/// [lo, hi) that hold image pixels, the phase's taps, Wt for every group and Z's row offsets.
template <class T>
struct grid_phase {
  std::size_t first = 0;    ///< element of dPP's channel where row lo of the sub-plane starts
  std::size_t columns = 0;  ///< (hi - lo) * cols: the GEMM's N
  std::size_t depth = 0;    ///< O / groups * taps: the GEMM's K (0: no tap lands here)
  std::vector<T> weights;   ///< Wt per group, [C / groups, depth] each
  std::vector<std::size_t> rows;  ///< Z row (o, t) at dY'[o] + Z - d(t) + lo * cols, per group
};

/// The phases of dPP that hold image pixels, for the weight w [O, C / groups, KH, KW].
template <class T>
std::vector<grid_phase<T>> grid_phases(const conv_geometry& g, const phase_planes& pp, const T* w) {
  std::vector<grid_phase<T>> phases;
  const std::size_t z = pp.max_offset(), og = g.og(), cg = g.cg(), kk = g.kh * g.kw;
  for (std::size_t a = 0; a < pp.sh; ++a) {
    const index_range rows = valid_outputs(g.h, pp.rows, pp.sh, g.ph, a);
    for (std::size_t b = 0; b < pp.sw; ++b) {
      const index_range cols = valid_outputs(g.w, pp.cols, pp.sw, g.pw, b);
      if (rows.lo == rows.hi || cols.lo == cols.hi) continue;  // no image pixel in this sub-plane
      grid_phase<T> ph;
      ph.first = (a * pp.sw + b) * pp.plane() + rows.lo * pp.cols;
      ph.columns = (rows.hi - rows.lo) * pp.cols;
      std::vector<std::size_t> taps;  // kh * KW + kw of the phase's taps
      for (std::size_t kh = a; kh < g.kh; kh += pp.sh)
        for (std::size_t kw = b; kw < g.kw; kw += pp.sw) taps.push_back(kh * g.kw + kw);
      ph.depth = og * taps.size();
      for (std::size_t o = 0; o < og; ++o) {
        for (std::size_t t : taps) {
          const std::size_t d = (t / g.kw / pp.sh) * pp.cols + (t % g.kw) / pp.sw;
          ph.rows.push_back(o * spread_size(pp) + z - d + rows.lo * pp.cols);
        }
      }
      ph.weights.resize(g.groups * cg * ph.depth);
      for (std::size_t grp = 0; grp < g.groups; ++grp) {
        T* wt = ph.weights.data() + grp * cg * ph.depth;
        for (std::size_t c = 0; c < cg; ++c)
          for (std::size_t o = 0; o < og; ++o)
            for (std::size_t t = 0; t < taps.size(); ++t)
              wt[c * ph.depth + o * taps.size() + t] = w[((grp * og + o) * cg + c) * kk + taps[t]];
      }
      phases.push_back(std::move(ph));
    }
  }
  return phases;
}

/// dx [C, H, W] += the image part of dPP, or dx = it when `store` (dx uninitialised).
template <class T>
void unpad_image(const T* dp, const conv_geometry& g, const phase_planes& pp, T* dx, bool store) {
  if (g.sh != 1 || g.sw != 1) {
    // Pixels that no window reaches (stride > 1) are in no phase plane: their gradient is 0.
    if (store) std::fill_n(dx, g.c * g.in_plane(), T(0));
    for (std::size_t c = 0; c < g.c; ++c) unpad_plane_add(dp + c * pp.size(), g, pp, dx + c * g.in_plane());
    return;
  }
  for (std::size_t c = 0; c < g.c; ++c) {  // stride 1: the padded plane holds every pixel
    const T* src = dp + c * pp.size() + g.ph * pp.cols + g.pw;
    T* dst = dx + c * g.in_plane();
    for (std::size_t r = 0; r < g.h; ++r, src += pp.cols, dst += g.w) {
      if (store) {
        std::copy_n(src, g.w, dst);
      } else {
        for (std::size_t i = 0; i < g.w; ++i) dst[i] += src[i];
      }
    }
  }
}

/// y [O, OH, OW] = the valid columns of Y' [O, N'] (+ bias[o] when bias is not null).
template <class T>
void crop_grid(const T* yg, const conv_geometry& g, const phase_planes& pp, const T* bias, T* y) {
  for (std::size_t o = 0; o < g.o; ++o) {
    const T b = bias ? bias[o] : T(0);
    for (std::size_t r = 0; r < g.oh; ++r, yg += pp.cols, y += g.ow) {
      if (bias) {
        for (std::size_t i = 0; i < g.ow; ++i) y[i] = yg[i] + b;
      } else {
        for (std::size_t i = 0; i < g.ow; ++i) y[i] = yg[i];
      }
    }
  }
}

/// gz = per channel o: [Z zeros][dY'[o]: dy [OH, OW] spread onto the grid, zeros in the
/// extra columns][Z zeros], spread_size(pp) elements each.
template <class T>
void spread_grid(const T* dy, const conv_geometry& g, const phase_planes& pp, T* gz) {
  const std::size_t z = pp.max_offset();
  for (std::size_t o = 0; o < g.o; ++o) {
    std::fill(gz, gz + z, T(0));
    gz += z;
    for (std::size_t r = 0; r < g.oh; ++r, dy += g.ow, gz += pp.cols) {
      for (std::size_t i = 0; i < g.ow; ++i) gz[i] = dy[i];
      for (std::size_t i = g.ow; i < pp.cols; ++i) gz[i] = T(0);
    }
    std::fill(gz, gz + z, T(0));
    gz += z;
  }
}

}  // namespace xquant::nn::functional::detail
