#pragma once
// im2col / col2im for one NCHW image, zero padding.
//
// col is [C * KH * KW, OH * OW] row-major: row (c * KH + kh) * KW + kw, column oh * OW + ow
// holds x[c][oh * SH + kh - PH][ow * SW + kw - PW], or 0 where that is padding. With the
// weight seen as [O, C * KH * KW], the convolution of the image is the GEMM W * col, and
// col2im (the adjoint: scatter-add of col back into the image) turns W^T * dY into dX.

#include <algorithm>
#include <cstddef>

#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional::detail {

/// col = im2col(x) for one image x [C, H, W] (g.c channels).
template <class T>
void im2col(const T* x, const conv_geometry& g, T* col) {
  const std::size_t plane = g.out_plane();
  for (std::size_t c = 0; c < g.c; ++c) {
    const T* src_plane = x + c * g.in_plane();
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      const index_range rows = valid_outputs(g.h, g.oh, g.sh, g.ph, kh);
      for (std::size_t kw = 0; kw < g.kw; ++kw) {
        const index_range cols = valid_outputs(g.w, g.ow, g.sw, g.pw, kw);
        T* dst = col + ((c * g.kh + kh) * g.kw + kw) * plane;
        if (cols.lo == cols.hi) {  // this kernel column only ever sees padding
          std::fill(dst, dst + plane, T(0));
          continue;
        }
        std::fill(dst, dst + rows.lo * g.ow, T(0));
        for (std::size_t oh = rows.lo; oh < rows.hi; ++oh) {
          T* out = dst + oh * g.ow;
          const T* in = src_plane + (oh * g.sh + kh - g.ph) * g.w + cols.lo * g.sw + kw - g.pw;
          std::fill(out, out + cols.lo, T(0));
          if (g.sw == 1) {
            std::copy(in, in + (cols.hi - cols.lo), out + cols.lo);
          } else {
            for (std::size_t i = 0; i < cols.hi - cols.lo; ++i) out[cols.lo + i] = in[i * g.sw];
          }
          std::fill(out + cols.hi, out + g.ow, T(0));
        }
        std::fill(dst + rows.hi * g.ow, dst + plane, T(0));
      }
    }
  }
}

/// dx += col2im(col) for one image dx [C, H, W]: the adjoint of im2col.
template <class T>
void col2im_add(const T* col, const conv_geometry& g, T* dx) {
  const std::size_t plane = g.out_plane();
  for (std::size_t c = 0; c < g.c; ++c) {
    T* dst_plane = dx + c * g.in_plane();
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      const index_range rows = valid_outputs(g.h, g.oh, g.sh, g.ph, kh);
      for (std::size_t kw = 0; kw < g.kw; ++kw) {
        const index_range cols = valid_outputs(g.w, g.ow, g.sw, g.pw, kw);
        if (cols.lo == cols.hi) continue;
        const T* src = col + ((c * g.kh + kh) * g.kw + kw) * plane;
        for (std::size_t oh = rows.lo; oh < rows.hi; ++oh) {
          const T* in = src + oh * g.ow + cols.lo;
          T* out = dst_plane + (oh * g.sh + kh - g.ph) * g.w + cols.lo * g.sw + kw - g.pw;
          for (std::size_t i = 0; i < cols.hi - cols.lo; ++i) out[i * g.sw] += in[i];
        }
      }
    }
  }
}

}  // namespace xquant::nn::functional::detail
