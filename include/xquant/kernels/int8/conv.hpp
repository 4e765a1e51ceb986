#pragma once
// Convolution of uint8 NHWC activations by implicit im2col: the int8 GEMM reads each output
// pixel's window in place from the input image instead of from an unfolded copy. Equals
// reference::int8::conv_nhwc (im2col, then the GEMM) bit for bit, on every GEMM path.
//
// Why: im2col writes, and the GEMM reads back, KH * KW * C bytes per output pixel. For the
// 16-64 channel 3x3 layers of the reference models that copy cost more than half as much as
// the GEMM itself (resnet, int8, batch 256: im2col with its memcpy and memset 23 % of the
// profile, the GEMM 32 %). In NHWC the KW taps of one kernel row are KW adjacent pixels, so
// a GEMM row is KH runs of KW * C contiguous bytes at a fixed distance from each other
// (gemm/tile.hpp, a_rows). Only the border needs care: the image is first copied once into
// a zero-point frame of PH rows and PW columns (frame.hpp; C bytes per pixel, not KH * KW *
// C), which makes every run lie inside it; unpadded convolutions read the input directly.
//
// A run must hold whole k groups of the packed weights (KW * C a multiple of 4). Where it
// does not (the one-channel first layer: 3 bytes), the kernel is widened with zero taps to
// KW' (4 for 3x3 over one channel: 3 groups per row, as many as im2col's K = 9 needs) and
// the frame gets KW' - KW more columns on the right; pack_conv_weights lays the weights
// out that way. The zero taps add nothing, so the result is still the specification's.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/int8/frame.hpp"
#include "xquant/kernels/int8/gemm.hpp"
#include "xquant/kernels/reference/int8/im2col.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

/// The kernel width conv_nhwc reads: KW widened with zero taps until a kernel row of
/// KW' * C bytes holds whole k groups (KW' <= KW + 3).
inline std::size_t read_kernel_w(const im2col_geometry& g) noexcept {
  std::size_t kw = g.kernel_w;
  while (kw * g.in.c % k_group != 0) ++kw;
  return kw;
}

/// The zero-point frame conv_nhwc reads image by image: the padding, plus on the right the
/// columns the widened kernel rows reach.
inline frame_sides conv_frame(const im2col_geometry& g) noexcept {
  return {g.pad_h, g.pad_h, g.pad_w, g.pad_w + read_kernel_w(g) - g.kernel_w};
}

/// Scratch bytes conv_nhwc needs: one framed image (none when the window neither pads nor
/// widens: the input is read in place).
inline std::size_t implicit_conv_scratch(const im2col_geometry& g) noexcept {
  const frame_sides f = conv_frame(g);
  if (f.top == 0 && f.left == 0 && f.right == 0) return 0;
  return f.bytes({1, g.in.h, g.in.w, g.in.c});
}

/// Packs convolution weights w [N][KH][KW][C] (im2col's column order) for conv_nhwc over
/// window g: each kernel row gets read_kernel_w(g) - KW zero taps. Column sums are those of
/// w. Throws value_error for null weights.
inline packed_weights pack_conv_weights(const std::int8_t* w, std::size_t n, const im2col_geometry& g) {
  const std::size_t kw = read_kernel_w(g), c = g.in.c;
  if (kw == g.kernel_w) return pack_weights(w, n, g.cols());
  check<value_error>(w != nullptr || n == 0, "int8 conv: null weights");
  const std::size_t row = g.kernel_w * c, wide_row = kw * c;
  std::vector<std::int8_t> wide(n * g.kernel_h * wide_row, 0);
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t kh = 0; kh < g.kernel_h; ++kh)
      std::memcpy(&wide[(j * g.kernel_h + kh) * wide_row], w + (j * g.kernel_h + kh) * row, row);
  }
  return pack_weights(wide.data(), n, g.kernel_h * wide_row);
}

/// Throws unless conv_nhwc(x, g, zp, w, bias, rq, out, scratch) is well formed: weights
/// from pack_conv_weights for g, non-null data, uint8 requantization.
inline void check_conv_args(const std::uint8_t* x, const im2col_geometry& g, const packed_weights& w,
                            const requant_channel_args& rq, const std::uint8_t* out, const std::uint8_t* scratch) {
  const std::size_t k = g.kernel_h * read_kernel_w(g) * g.in.c;
  check<shape_error>(w.k() == k, "int8 conv: weights of K = ", w.k(), " for a window that reads ", k,
                     " (pack them with pack_conv_weights)");
  check<value_error>(g.rows() == 0 || (x != nullptr && out != nullptr), "int8 conv: null input or output");
  check<value_error>(implicit_conv_scratch(g) == 0 || scratch != nullptr, "int8 conv: null scratch");
  check_gemm_args(g.rows(), x, w.k(), w, rq, out, w.n());
}

namespace conv_detail {

/// The GEMM rows of one image whose framed pixels start at image, padded_w pixels a row.
inline gemm_detail::a_rows window_rows(const im2col_geometry& g, const std::uint8_t* image,
                                       std::size_t padded_w) noexcept {
  const std::size_t c = g.in.c, padded_row = padded_w * c;
  gemm_detail::a_rows a;
  a.base = image;
  a.lda = g.stride_w * c;
  a.out_w = g.out_w;
  a.row_stride = g.stride_h * padded_row;
  a.segments = g.kernel_h;
  a.segment_len = read_kernel_w(g) * c;
  a.segment_stride = padded_row;
  return a;
}

}  // namespace conv_detail

/// out (NHWC, w.n() channels) = the convolution of x over window g on GEMM path p, image by
/// image, with w = pack_conv_weights(..., g); scratch holds implicit_conv_scratch(g) bytes.
/// Trusted arguments (check_conv_args); allocates nothing.
template <class Arch = simd::default_arch>
void conv_nhwc(gemm_path p, const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point,
               const packed_weights& w, const std::int32_t* bias, const requant_channel_args& rq, std::uint8_t* out,
               std::uint8_t* scratch) noexcept {
  // Must equal reference::int8::conv_nhwc bit for bit.
  const std::size_t pixels = g.out_h * g.out_w;
  const frame_sides frame = conv_frame(g);
  const bool framed = implicit_conv_scratch(g) > 0;
  const std::size_t padded_w = frame.width(g.in);
  // Image n is framed (when needed) right before the GEMM reads it.
  const auto rows_of = [&](std::size_t n) {
    const std::uint8_t* image = x + g.in.at(n, 0, 0);
    if (framed) {
      frame_image(x, g.in, n, frame, zero_point, scratch);
      image = scratch;
    }
    return conv_detail::window_rows(g, image, padded_w);
  };
  gemm_detail::run_path<Arch>(p, g.in.n, pixels, rows_of, w, bias, rq, out, w.n(), pixels * w.n());
}

/// The same on default_path<Arch>().
template <class Arch = simd::default_arch>
void conv_nhwc(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point, const packed_weights& w,
               const std::int32_t* bias, const requant_channel_args& rq, std::uint8_t* out,
               std::uint8_t* scratch) noexcept {
  conv_nhwc<Arch>(default_path<Arch>(), x, g, zero_point, w, bias, rq, out, scratch);
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
