#pragma once
// The shape of an NHWC uint8 activation tensor, shared by the int8 kernels (kernels/int8/)
// and their references (kernels/reference/int8/). Channel innermost: element (n, h, w, c)
// sits at ((n * h_size + h) * w_size + w) * c_size + c.

#include <cstddef>

#include "xquant/core/error.hpp"

namespace xquant::kernels::int8 {

struct nhwc_shape {
  std::size_t n = 0, h = 0, w = 0, c = 0;

  std::size_t pixels() const noexcept { return n * h * w; }
  std::size_t size() const noexcept { return pixels() * c; }
  /// Offset of pixel (image, y, x), i.e. of its channel 0.
  std::size_t at(std::size_t image, std::size_t y, std::size_t x) const noexcept {
    return ((image * h + y) * w + x) * c;
  }
  friend bool operator==(const nhwc_shape&, const nhwc_shape&) = default;
};

/// Throws shape_error naming `what` unless every dimension is positive.
inline void check_nhwc(const nhwc_shape& s, const char* what) {
  check<shape_error>(s.n > 0 && s.h > 0 && s.w > 0 && s.c > 0, what, ": NHWC shape [", s.n, ", ", s.h, ", ", s.w, ", ",
                     s.c, "] has a zero dimension");
}

}  // namespace xquant::kernels::int8
