#pragma once
// im2col / col2im on the zero-padded (phase) grid: the long-loop form used by conv2d for
// convolutions with a kernel larger than 1x1.
//
// Each channel plane of the image is first copied into zero-padded phase planes (the
// layout of the direct depthwise kernel, detail/depthwise.hpp: for strides SH x SW the
// padded plane is split into SH * SW sub-planes of `rows` x `cols`, cols = OW + (KW - 1) / SW,
// followed by `cols` zeros of slack; for stride 1 that is just the padded plane
// [H + 2 PH, W + 2 PW]). Output (oh, ow), computed with row pitch `cols`, sits at column
// i = oh * cols + ow of a grid of N' = OH * cols columns, and its input under tap (kh, kw)
// is element tap(kh, kw) + i of the channel's phase planes: every tap is ONE contiguous run
// of N' elements, with no bounds checks, for any stride. So
//
//   col'[(c * KH + kh) * KW + kw][i] = PP[c][tap(kh, kw) + i],   i in [0, N')
//
// is built with C * KH * KW long copies (the classic im2col makes C * KH * KW * OH short
// ones plus zero fills), and Y' = W * col' is the output on the grid; crop_grid drops the
// cols - OW = (KW - 1) / SW extra columns of each row. The extra columns read elements of
// the next sub-plane row (or the slack): they only feed dropped outputs.
//
// Backward: dY' = dY spread onto the grid with zeros in the extra columns; then
// dW = dY' * col'^T (the zero columns add exact zeros) and dcol' = W^T * dY', whose extra
// columns are exact zeros too, so col2im on the grid (dPP[c][tap + i] += dcol'[(c, tap)][i],
// again one contiguous run per row of dcol') adds nothing where it should not; then
// dX += the image part of dPP (unpad_plane_add).
//
// Cost: the GEMM's N grows from OH * OW to OH * cols (3x3 pad 1 stride 1 on 28x28: +7 %,
// on 7x7: +29 %); conv2d.hpp takes this path only when that is small (use_padded_grid).

#include <algorithm>
#include <cstddef>

#include "xquant/nn/functional/detail/depthwise.hpp"
#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional::detail {

/// N' = OH * cols, the columns of col', Y' and dY'.
inline std::size_t grid_columns(const phase_planes& pp) { return pp.out_size(); }

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

/// col' [C * KH * KW, N'] from PP (see the top of this file).
template <class T>
void grid_im2col(const T* p, const conv_geometry& g, const phase_planes& pp, T* col) {
  const std::size_t n = grid_columns(pp);
  for (std::size_t c = 0; c < g.c; ++c) {
    const T* planes = p + c * pp.size();
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      for (std::size_t kw = 0; kw < g.kw; ++kw, col += n) {
        const T* src = planes + pp.tap(kh, kw);
        for (std::size_t i = 0; i < n; ++i) col[i] = src[i];
      }
    }
  }
}

/// dPP = col2im(dcol') on the grid (written, not accumulated: pp.size() per channel).
template <class T>
void grid_col2im(const T* dcol, const conv_geometry& g, const phase_planes& pp, T* dp) {
  const std::size_t n = grid_columns(pp);
  std::fill(dp, dp + g.c * pp.size(), T(0));
  for (std::size_t c = 0; c < g.c; ++c) {
    T* planes = dp + c * pp.size();
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      for (std::size_t kw = 0; kw < g.kw; ++kw, dcol += n) {
        T* dst = planes + pp.tap(kh, kw);
        for (std::size_t i = 0; i < n; ++i) dst[i] += dcol[i];
      }
    }
  }
}

/// dx [C, H, W] += the image part of dPP.
template <class T>
void unpad_image_add(const T* dp, const conv_geometry& g, const phase_planes& pp, T* dx) {
  if (g.sh != 1 || g.sw != 1) {
    for (std::size_t c = 0; c < g.c; ++c) unpad_plane_add(dp + c * pp.size(), g, pp, dx + c * g.in_plane());
    return;
  }
  for (std::size_t c = 0; c < g.c; ++c) {
    const T* src = dp + c * pp.size() + g.ph * pp.cols + g.pw;
    T* dst = dx + c * g.in_plane();
    for (std::size_t r = 0; r < g.h; ++r, src += pp.cols, dst += g.w) {
      for (std::size_t i = 0; i < g.w; ++i) dst[i] += src[i];
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

/// dY' [O, N'] = dy [O, OH, OW] spread onto the grid, zeros in the extra columns.
template <class T>
void spread_grid(const T* dy, const conv_geometry& g, const phase_planes& pp, T* dyg) {
  for (std::size_t o = 0; o < g.o; ++o) {
    for (std::size_t r = 0; r < g.oh; ++r, dy += g.ow, dyg += pp.cols) {
      for (std::size_t i = 0; i < g.ow; ++i) dyg[i] = dy[i];
      for (std::size_t i = g.ow; i < pp.cols; ++i) dyg[i] = T(0);
    }
  }
}

}  // namespace xquant::nn::functional::detail
