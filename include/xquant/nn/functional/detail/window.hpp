#pragma once
// Geometry of a sliding 2-D window (convolution and pooling) and the valid-range helper
// that lets the loops skip bounds checks.
//
// Output position o along one axis reads input position i = o * stride + k - pad for
// kernel offset k; positions with i < 0 or i >= size are zero padding (convolution) or
// are skipped (pooling).

#include <algorithm>
#include <cstddef>

namespace xquant::nn::functional::detail {

/// The output indices o in [lo, hi) whose input position o * stride + k - pad lies in
/// [0, size). Everything outside [lo, hi) reads padding.
struct index_range {
  std::size_t lo = 0, hi = 0;
};

inline index_range valid_outputs(std::size_t size, std::size_t out, std::size_t stride, std::size_t pad,
                                 std::size_t k) {
  index_range r;
  r.lo = k >= pad ? 0 : (pad - k + stride - 1) / stride;
  r.hi = size + pad <= k ? 0 : std::min(out, (size - 1 + pad - k) / stride + 1);
  r.lo = std::min(r.lo, r.hi);
  return r;
}

/// The output size of a window sweep: floor((size + 2 pad - kernel) / stride) + 1.
/// The caller has checked size + 2 pad >= kernel and stride > 0.
inline std::size_t window_output(std::size_t size, std::size_t kernel, std::size_t stride, std::size_t pad) {
  return (size + 2 * pad - kernel) / stride + 1;
}

/// One convolution's sizes, resolved once from the input, weight and options.
struct conv_geometry {
  std::size_t n = 0, c = 0, h = 0, w = 0;  ///< input [N, C, H, W]
  std::size_t o = 0, kh = 0, kw = 0;       ///< weight [O, C / groups, KH, KW]
  std::size_t sh = 1, sw = 1, ph = 0, pw = 0, groups = 1;
  std::size_t oh = 0, ow = 0;  ///< output plane

  std::size_t cg() const { return c / groups; }      ///< input channels per group
  std::size_t og() const { return o / groups; }      ///< output channels per group
  std::size_t kg() const { return cg() * kh * kw; }  ///< GEMM depth per group
  std::size_t in_plane() const { return h * w; }
  std::size_t out_plane() const { return oh * ow; }
  std::size_t col_rows() const { return c * kh * kw; }  ///< im2col rows of one image
  /// 1x1, stride 1, no padding: the input image already is its im2col matrix.
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
  /// One filter per channel: the direct depthwise kernel applies.
  bool depthwise() const { return groups == c && groups == o; }
};

}  // namespace xquant::nn::functional::detail
