#pragma once
// im2col for uint8 NHWC activations; equals reference::int8::im2col_nhwc byte for byte
// (kernels/reference/int8/im2col.hpp has the layout and the padding rule).
//
// In NHWC the KW taps of one kernel row are KW adjacent pixels, i.e. ONE contiguous run of
// KW * C input bytes, so a row of the matrix is KH copies (fewer at the border, where the
// run is cut and the rest is zero-point fill) instead of KH * KW * C byte moves. The rows of
// one output row are written kernel row by kernel row, so the input row and the padding
// tests are resolved once per output row and the interior is a loop of plain copies. The copy is
// the vector code: short runs (the 3 bytes of a one-channel 3x3 conv, the 48 of 16 channels)
// are overlapping fixed-size moves, which compile to a few loads and stores, long runs go
// to memcpy. Arch is accepted for uniformity with the other int8 kernels; the copies
// need no instruction-set-specific code.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "xquant/kernels/reference/int8/im2col.hpp"
#include "xquant/kernels/simd.hpp"

namespace xquant::kernels::int8 {

namespace detail {

/// memcpy for runs that are usually short: two overlapping fixed-size moves cover any n in
/// [k, 2k], and the compiler emits each as one load and one store.
inline void copy_run(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) noexcept {
  const auto two_moves = [&](auto k) {
    std::memcpy(dst, src, k);
    std::memcpy(dst + n - k, src + n - k, k);
  };
  if (n > 32) {
    std::memcpy(dst, src, n);
  } else if (n >= 16) {
    two_moves(std::integral_constant<std::size_t, 16>{});
  } else if (n >= 8) {
    two_moves(std::integral_constant<std::size_t, 8>{});
  } else if (n >= 4) {
    two_moves(std::integral_constant<std::size_t, 4>{});
  } else if (n >= 2) {
    two_moves(std::integral_constant<std::size_t, 2>{});
  } else if (n == 1) {
    *dst = *src;
  }
}

/// The kernel columns [lo, hi) whose input column ow * SW + kw - PW lies inside the image.
struct tap_range {
  std::size_t lo, hi;
};

inline tap_range inside_columns(const im2col_geometry& g, std::size_t ow) noexcept {
  const std::size_t first = ow * g.stride_w;  // input column of kw = 0, plus PW
  const std::size_t lo = std::min(g.kernel_w, g.pad_w > first ? g.pad_w - first : 0);
  const std::size_t end = g.in.w + g.pad_w;  // kw < end - first keeps the column inside
  const std::size_t hi = end > first ? std::min(g.kernel_w, end - first) : 0;
  return {lo, std::max(lo, hi)};
}

/// Kernel row kh of output pixel ow, whose input row starts at `row`, at the border: the
/// taps outside the image get the zero point.
inline void border_taps(const std::uint8_t* row, const im2col_geometry& g, std::uint8_t zero_point, std::size_t ow,
                        std::uint8_t* dst) noexcept {
  const std::size_t c = g.in.c;
  const tap_range cols = inside_columns(g, ow);
  std::memset(dst, zero_point, cols.lo * c);
  if (cols.hi > cols.lo)
    copy_run(dst + cols.lo * c, row + (ow * g.stride_w + cols.lo - g.pad_w) * c, (cols.hi - cols.lo) * c);
  std::memset(dst + cols.hi * c, zero_point, (g.kernel_w - cols.hi) * c);
}

/// The output columns [lo, hi) whose whole kernel row lies inside the image (one copy each).
inline tap_range interior_outputs(const im2col_geometry& g) noexcept {
  const std::size_t lo = (g.pad_w + g.stride_w - 1) / g.stride_w;  // ow * SW >= PW
  const std::size_t room = g.in.w + g.pad_w;                       // ow * SW + KW <= W + PW
  const std::size_t hi = room >= g.kernel_w ? std::min(g.out_w, (room - g.kernel_w) / g.stride_w + 1) : 0;
  return {std::min(lo, hi), hi};
}

/// The rows of output pixels (n, oh, ow), ow in [ow0, ow1), the first at dst; kernel row by
/// kernel row, so the input row and the border test are resolved once per segment.
inline void im2col_segment(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point, std::size_t n,
                           std::size_t oh, std::size_t ow0, std::size_t ow1, std::uint8_t* dst,
                           std::size_t ld) noexcept {
  const std::size_t c = g.in.c, run = g.kernel_w * c, step = g.stride_w * c;
  const tap_range interior = interior_outputs(g);
  for (std::size_t kh = 0; kh < g.kernel_h; ++kh) {
    std::uint8_t* d = dst + kh * run;
    const std::size_t ih = oh * g.stride_h + kh;  // plus PH
    if (ih < g.pad_h || ih >= g.in.h + g.pad_h) {
      for (std::size_t ow = ow0; ow < ow1; ++ow, d += ld) std::memset(d, zero_point, run);
      continue;
    }
    const std::uint8_t* row = x + g.in.at(n, ih - g.pad_h, 0);
    for (std::size_t ow = ow0; ow < ow1; ++ow, d += ld) {
      if (ow >= interior.lo && ow < interior.hi) {
        copy_run(d, row + ow * step - g.pad_w * c, run);
      } else {
        border_taps(row, g, zero_point, ow, d);
      }
    }
  }
}

}  // namespace detail

/// Rows [first_row, first_row + row_count) of the im2col matrix of x, row first_row at out
/// (for tiled or threaded callers: any row range, in any order, gives the same bytes).
template <class Arch = simd::default_arch>
void im2col_nhwc_rows(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point, std::size_t first_row,
                      std::size_t row_count, std::uint8_t* out, std::size_t ld) noexcept {
  for (std::size_t r = 0; r < row_count;) {
    const std::size_t row = first_row + r;
    const std::size_t ow = row % g.out_w, oh = row / g.out_w % g.out_h, n = row / g.out_w / g.out_h;
    const std::size_t count = std::min(g.out_w - ow, row_count - r);  // up to the end of the output row
    detail::im2col_segment(x, g, zero_point, n, oh, ow, ow + count, out + r * ld, ld);
    r += count;
  }
}

/// The whole im2col matrix: g.rows() rows of g.cols() bytes, row stride ld >= g.cols().
template <class Arch = simd::default_arch>
void im2col_nhwc(const std::uint8_t* x, const im2col_geometry& g, std::uint8_t zero_point, std::uint8_t* out,
                 std::size_t ld) noexcept {
  im2col_nhwc_rows<Arch>(x, g, zero_point, 0, g.rows(), out, ld);
}

}  // namespace xquant::kernels::int8
