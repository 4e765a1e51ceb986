#pragma once
// im2col for uint8 NHWC activations, the specification of the convolutions' GEMM operand
// (reference/int8/conv.hpp; kernels/int8/conv.hpp reads the same matrix in place instead of
// building it).
//
// A KH x KW convolution with strides (SH, SW) and padding (PH, PW) on each side reads, for
// output pixel (n, oh, ow) and tap (kh, kw), input pixel (n, oh * SH + kh - PH,
// ow * SW + kw - PW). im2col lays these out as the rows of the GEMM's left operand:
//
//   row r = (n * OH + oh) * OW + ow,   column (kh * KW + kw) * C + c
//   out[r * ld + column] = x[n][ih][iw][c], or the zero point where (ih, iw) is padding
//
// OH = (H + 2 PH - KH) / SH + 1 (floor), likewise OW. Padding holds the input zero point,
// the integer that means real 0: with the converter's bias folding (the bias already
// carries -zero_point * sum(w)) a padded tap then contributes exactly what real zero
// padding contributes. Columns [KH * KW * C, ld) of each row are not written, so a caller
// whose GEMM reads a K padded to its block size zero-fills them once, when it plans the
// buffer. (A 1x1, stride-1, unpadded convolution needs no im2col: x already is that matrix
// with ld = C.)

#include <cstddef>
#include <cstdint>

#include "xquant/core/error.hpp"
#include "xquant/kernels/reference/int8/shape.hpp"

namespace xquant::kernels::int8 {

/// A convolution window over an NHWC input, resolved once by make_im2col_geometry.
struct im2col_geometry {
  nhwc_shape in;
  std::size_t kernel_h = 1, kernel_w = 1;
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;  ///< rows / columns of padding on each side
  std::size_t out_h = 0, out_w = 0;

  std::size_t rows() const noexcept { return in.n * out_h * out_w; }        ///< GEMM M
  std::size_t cols() const noexcept { return kernel_h * kernel_w * in.c; }  ///< GEMM K
};

/// Validates the window (positive sizes and strides, window no larger than the padded
/// input) and computes the output size; throws shape_error otherwise.
inline im2col_geometry make_im2col_geometry(const nhwc_shape& in, std::size_t kernel_h, std::size_t kernel_w,
                                            std::size_t stride_h, std::size_t stride_w, std::size_t pad_h,
                                            std::size_t pad_w) {
  check_nhwc(in, "im2col input");
  check<shape_error>(kernel_h > 0 && kernel_w > 0 && stride_h > 0 && stride_w > 0, "im2col: kernel ", kernel_h, "x",
                     kernel_w, " and stride ", stride_h, "x", stride_w, " must be positive");
  check<shape_error>(in.h + 2 * pad_h >= kernel_h && in.w + 2 * pad_w >= kernel_w, "im2col: kernel ", kernel_h, "x",
                     kernel_w, " is larger than the padded input ", in.h + 2 * pad_h, "x", in.w + 2 * pad_w);
  im2col_geometry g;
  g.in = in;
  g.kernel_h = kernel_h;
  g.kernel_w = kernel_w;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.pad_h = pad_h;
  g.pad_w = pad_w;
  g.out_h = (in.h + 2 * pad_h - kernel_h) / stride_h + 1;
  g.out_w = (in.w + 2 * pad_w - kernel_w) / stride_w + 1;
  return g;
}

/// Bytes of an im2col buffer of g.rows() rows with row stride ld; throws shape_error
/// unless ld >= g.cols().
inline std::size_t im2col_size(const im2col_geometry& g, std::size_t ld) {
  check<shape_error>(ld >= g.cols(), "im2col: row stride ", ld, " is smaller than the row length ", g.cols());
  return g.rows() * ld;
}

}  // namespace xquant::kernels::int8

namespace xquant::kernels::reference::int8 {

using kernels::int8::im2col_geometry;

/// Rows [first_row, first_row + row_count) of the im2col matrix of x, row first_row at out.
inline void im2col_nhwc_rows(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point,
                             std::size_t first_row, std::size_t row_count, std::uint8_t* out, std::size_t ld) noexcept {
  using index = std::ptrdiff_t;
  for (std::size_t r = 0; r < row_count; ++r) {
    const std::size_t row = first_row + r;
    const std::size_t ow = row % g.out_w, oh = row / g.out_w % g.out_h, n = row / g.out_w / g.out_h;
    for (std::size_t kh = 0; kh < g.kernel_h; ++kh) {
      for (std::size_t kw = 0; kw < g.kernel_w; ++kw) {
        const index ih = static_cast<index>(oh * g.stride_h + kh) - static_cast<index>(g.pad_h);
        const index iw = static_cast<index>(ow * g.stride_w + kw) - static_cast<index>(g.pad_w);
        const bool inside = ih >= 0 && iw >= 0 && ih < static_cast<index>(g.in.h) && iw < static_cast<index>(g.in.w);
        for (std::size_t c = 0; c < g.in.c; ++c) {
          out[r * ld + (kh * g.kernel_w + kw) * g.in.c + c] =
              inside ? x[g.in.at(n, static_cast<std::size_t>(ih), static_cast<std::size_t>(iw)) + c] : zero_point;
        }
      }
    }
  }
}

/// The whole im2col matrix: g.rows() rows of g.cols() bytes, row stride ld.
inline void im2col_nhwc(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point, std::uint8_t* out,
                        std::size_t ld) noexcept {
  im2col_nhwc_rows(x, g, zero_point, 0, g.rows(), out, ld);
}

}  // namespace xquant::kernels::reference::int8
