#pragma once
// Direct depthwise convolution (groups == C == O): one KH x KW filter per channel, no
// im2col and no GEMM. Each function handles one channel plane; the op (conv2d.hpp) walks
// the planes in memory order, in parallel.
//
// The plane is first copied into zero-padded "phase planes": for strides SH x SW the
// padded image is split into SH * SW sub-planes by (row % SH, column % SW), each of
//     rows = OH + (KH - 1) / SH,  cols = OW + (KW - 1) / SW
// so that the input of output (oh, ow) under tap (kh, kw) is
//     sub-plane (kh % SH, kw % SW), element (oh + kh / SH, ow + kw / SW).
// Flattened with row pitch `cols`, that is element oh * cols + ow + tap_offset: every tap
// becomes ONE contiguous loop over the whole output plane (computed with pitch cols; the
// cols - OW extra columns per row are discarded), with no bounds checks, for any stride.
// The compiler vectorises these long loops; the backward uses the same layout.

#include <algorithm>
#include <cstddef>

#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional::detail {

struct phase_planes {
  std::size_t sh = 1, sw = 1;      ///< number of row / column phases (the strides)
  std::size_t rows = 0, cols = 0;  ///< of each sub-plane
  std::size_t oh = 0;              ///< output rows
  std::size_t max_off = 0;         ///< the largest offset of a tap within its sub-plane

  static phase_planes of(const conv_geometry& g) {
    const std::size_t cols = g.ow + (g.kw - 1) / g.sw;
    return {g.sh, g.sw, g.oh + (g.kh - 1) / g.sh, cols, g.oh, (g.kh - 1) / g.sh * cols + (g.kw - 1) / g.sw};
  }
  std::size_t plane() const { return rows * cols; }
  /// All sub-planes plus `cols` of zero slack: a tap reading the last sub-plane runs up to
  /// (KW - 1) / SW elements past its end, in discarded columns only.
  std::size_t size() const { return sh * sw * plane() + cols; }
  /// The output plane computed with pitch cols.
  std::size_t out_size() const { return oh * cols; }
  std::size_t max_offset() const { return max_off; }
  /// Offset of the input of output 0 under tap (kh, kw).
  std::size_t tap(std::size_t kh, std::size_t kw) const {
    return ((kh % sh) * sw + kw % sw) * plane() + (kh / sh) * cols + kw / sw;
  }
};

/// Visits every sub-plane row that holds image pixels: body(image row, sub-plane row
/// pointer offset, valid column range, column phase).
template <class Body>
void for_each_phase_row(const conv_geometry& g, const phase_planes& pp, Body&& body) {
  for (std::size_t a = 0; a < pp.sh; ++a) {
    const index_range rows = valid_outputs(g.h, pp.rows, pp.sh, g.ph, a);
    for (std::size_t b = 0; b < pp.sw; ++b) {
      const index_range cols = valid_outputs(g.w, pp.cols, pp.sw, g.pw, b);
      if (cols.lo == cols.hi) continue;  // this column phase holds only padding
      for (std::size_t r = rows.lo; r < rows.hi; ++r) {
        body((r * pp.sh + a - g.ph) * g.w, (a * pp.sw + b) * pp.plane() + r * pp.cols, cols, b);
      }
    }
  }
}

/// P = the phase planes of one image plane x [H, W] (zeros where padding).
template <class T>
void pad_plane(const T* x, const conv_geometry& g, const phase_planes& pp, T* p) {
  std::fill(p, p + pp.size(), T(0));
  const std::size_t sw = g.sw;
  for_each_phase_row(g, pp, [=](std::size_t src, std::size_t dst, index_range cols, std::size_t b) {
    const T* in = x + src + cols.lo * sw + b - g.pw;
    T* out = p + dst + cols.lo;
    const std::size_t n = cols.hi - cols.lo;
    if (sw == 1) {
      std::copy(in, in + n, out);
    } else if (sw == 2) {  // a constant stride: vectorised with shuffles
      for (std::size_t j = 0; j < n; ++j) out[j] = in[j * 2];
    } else {
      for (std::size_t j = 0; j < n; ++j) out[j] = in[j * sw];
    }
  });
}

/// dx += the adjoint of pad_plane applied to dp (padding positions are dropped).
template <class T>
void unpad_plane_add(const T* dp, const conv_geometry& g, const phase_planes& pp, T* dx) {
  const std::size_t sw = g.sw;
  for_each_phase_row(g, pp, [=](std::size_t src, std::size_t dst, index_range cols, std::size_t b) {
    T* out = dx + src + cols.lo * sw + b - g.pw;
    const T* in = dp + dst + cols.lo;
    const std::size_t n = cols.hi - cols.lo;
    if (sw == 1) {
      for (std::size_t j = 0; j < n; ++j) out[j] += in[j];
    } else if (sw == 2) {
      for (std::size_t j = 0; j < n; ++j) out[j * 2] += in[j];
    } else {
      for (std::size_t j = 0; j < n; ++j) out[j * sw] += in[j];
    }
  });
}

/// out[oh * cols + ow] = bias + sum_{kh,kw} w[kh][kw] * P[tap(kh, kw) + oh * cols + ow],
/// then y [OH, OW] = the valid columns of out.
template <class T>
void depthwise_forward_plane(const T* p, const T* w, T bias, const conv_geometry& g, const phase_planes& pp, T* out,
                             T* y) {
  const std::size_t n = pp.out_size();
  if (g.kh == 3 && g.kw == 3) {  // all nine taps in one pass: out is written once
    const T* in[9];
    for (std::size_t t = 0; t < 9; ++t) in[t] = p + pp.tap(t / 3, t % 3);
    for (std::size_t i = 0; i < n; ++i) {
      T v = bias;
      for (std::size_t t = 0; t < 9; ++t) v += w[t] * in[t][i];
      out[i] = v;
    }
  } else {
    std::fill(out, out + n, bias);
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      for (std::size_t kw = 0; kw < g.kw; ++kw) {
        const T wv = w[kh * g.kw + kw];
        const T* in = p + pp.tap(kh, kw);
        for (std::size_t i = 0; i < n; ++i) out[i] += wv * in[i];
      }
    }
  }
  for (std::size_t oh = 0; oh < g.oh; ++oh) std::copy(out + oh * pp.cols, out + oh * pp.cols + g.ow, y + oh * g.ow);
}

/// gz = [Z zeros][dy re-pitched to [OH, cols], zeros in the extra columns][Z zeros],
/// Z = max_offset(): the input-gradient gather below then never reads out of range.
template <class T>
void pad_output_grad(const T* dy, const conv_geometry& g, const phase_planes& pp, T* gz) {
  const std::size_t z = pp.max_offset();
  std::fill(gz, gz + z, T(0));
  T* gy = gz + z;
  for (std::size_t oh = 0; oh < g.oh; ++oh) {
    T* row = gy + oh * pp.cols;
    std::copy(dy + oh * g.ow, dy + (oh + 1) * g.ow, row);
    std::fill(row + g.ow, row + pp.cols, T(0));
  }
  std::fill(gy + pp.out_size(), gy + pp.out_size() + z, T(0));
}

/// dp = the gradient of the phase planes P: sub-plane (a, b) element j collects
/// w[kh][kw] * gy[j - offset(kh, kw)] from the taps with kh % SH == a, kw % SW == b (a
/// gather, so dp is written once). unpad_plane_add then maps dp to dx.
template <class T>
void depthwise_input_grad_plane(const T* gz, const T* w, const conv_geometry& g, const phase_planes& pp, T* dp) {
  const std::size_t z = pp.max_offset(), plane = pp.plane();
  if (g.kh == 3 && g.kw == 3 && pp.sh == 1 && pp.sw == 1) {  // nine taps in one pass
    const T* src[9];
    for (std::size_t t = 0; t < 9; ++t) src[t] = gz + z - pp.tap(t / 3, t % 3);
    for (std::size_t j = 0; j < plane; ++j) {
      T v = 0;
      for (std::size_t t = 0; t < 9; ++t) v += w[t] * src[t][j];
      dp[j] = v;
    }
    return;
  }
  for (std::size_t a = 0; a < pp.sh; ++a) {
    for (std::size_t b = 0; b < pp.sw; ++b) {
      T* d = dp + (a * pp.sw + b) * plane;
      std::fill(d, d + plane, T(0));
      for (std::size_t kh = a; kh < g.kh; kh += pp.sh) {
        for (std::size_t kw = b; kw < g.kw; kw += pp.sw) {
          const T wv = w[kh * g.kw + kw];
          const T* src = gz + z + (a * pp.sw + b) * plane - pp.tap(kh, kw);
          for (std::size_t j = 0; j < plane; ++j) d[j] += wv * src[j];
        }
      }
    }
  }
}

inline constexpr std::size_t dw_lanes = 8;

/// acc[tap][lane] += the products gy[i] * P[tap + i] (i = lane mod 8), for dW; the caller
/// sums the lanes. gy is the re-pitched gradient (zeros in the extra columns).
template <class T>
void depthwise_weight_grad_plane(const T* gy, const T* p, const conv_geometry& g, const phase_planes& pp, T* acc) {
  const std::size_t n = pp.out_size();
  for (std::size_t kh = 0; kh < g.kh; ++kh) {
    for (std::size_t kw = 0; kw < g.kw; ++kw) {
      const T* in = p + pp.tap(kh, kw);
      T lane[dw_lanes] = {};  // local: the compiler keeps it in registers
      std::size_t i = 0;
      for (; i + dw_lanes <= n; i += dw_lanes)
        for (std::size_t l = 0; l < dw_lanes; ++l) lane[l] += gy[i + l] * in[i + l];
      for (; i < n; ++i) lane[0] += gy[i] * in[i];
      T* a = acc + (kh * g.kw + kw) * dw_lanes;
      for (std::size_t l = 0; l < dw_lanes; ++l) a[l] += lane[l];
    }
  }
}

}  // namespace xquant::nn::functional::detail
