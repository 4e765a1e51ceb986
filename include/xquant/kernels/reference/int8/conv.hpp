#pragma once
// Convolution of uint8 NHWC activations, the specification: im2col (reference/int8/im2col.hpp,
// padding holds the input zero point) followed by the int8 GEMM with fused requantization
// (reference/int8/gemm.hpp). kernels/int8/conv.hpp computes the same bytes without the
// unfolded copy.
//
//   out[(n * OH + oh) * OW + ow][j] = requantize_j(bias[j] + sum_k im2col[row][k] * w[j][k])
//
// w is [N][KH * KW * C] in im2col's column order (kh, kw, c); out is NHWC with N channels.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "xquant/kernels/reference/int8/gemm.hpp"
#include "xquant/kernels/reference/int8/im2col.hpp"

namespace xquant::kernels::reference::int8 {

inline void conv_nhwc(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point, const std::int8_t* w,
                      std::size_t n, const std::int32_t* bias, const requant_channel_args& rq, std::uint8_t* out) {
  std::vector<std::uint8_t> unfolded(g.rows() * g.cols());
  im2col_nhwc(x, g, zero_point, unfolded.data(), g.cols());
  gemm(g.rows(), n, g.cols(), unfolded.data(), g.cols(), w, bias, rq, out, n);
}

}  // namespace xquant::kernels::reference::int8
