#pragma once
// An image copied into a frame of its zero point: the convolutions (conv.hpp, depthwise.hpp)
// read every tap of every output pixel at a fixed offset from the pixel, with no border
// tests, because padding taps land in the frame. The zero point is the integer that means
// real 0, so a frame tap contributes what real zero padding contributes (the converter's
// bias already carries -zero_point * sum(w)). Copying C bytes per pixel once is far cheaper
// than testing the border per tap or unfolding KH * KW * C bytes per pixel (im2col).

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "xquant/kernels/reference/int8/shape.hpp"

namespace xquant::kernels::int8 {

/// Rows above and below, columns left and right of an image inside its frame.
struct frame_sides {
  std::size_t top = 0, bottom = 0, left = 0, right = 0;

  std::size_t height(const nhwc_shape& s) const noexcept { return top + s.h + bottom; }
  std::size_t width(const nhwc_shape& s) const noexcept { return left + s.w + right; }
  /// Bytes of one framed image.
  std::size_t bytes(const nhwc_shape& s) const noexcept { return height(s) * width(s) * s.c; }
};

/// Image n of x (NHWC, shape s) inside frame f of zero_point, at dst (f.bytes(s) bytes).
inline void frame_image(const std::uint8_t* x, const nhwc_shape& s, std::size_t n, const frame_sides& f,
                        std::uint8_t zero_point, std::uint8_t* dst) noexcept {
  const std::size_t c = s.c, left = f.left * c, row = s.w * c, right = f.right * c;
  const std::size_t framed_row = left + row + right;
  std::memset(dst, zero_point, f.top * framed_row);
  dst += f.top * framed_row;
  for (std::size_t h = 0; h < s.h; ++h, dst += framed_row) {
    std::memset(dst, zero_point, left);
    std::memcpy(dst + left, x + s.at(n, h, 0), row);
    std::memset(dst + left + row, zero_point, right);
  }
  std::memset(dst, zero_point, f.bottom * framed_row);
}

}  // namespace xquant::kernels::int8
