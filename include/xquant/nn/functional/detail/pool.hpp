#pragma once
// Per-plane pooling loops (max and average), used by functional/pooling.hpp.
//
// Windows are clipped to the image, so padding never takes part in a maximum; the average
// divides by KH * KW regardless (count_include_pad = true). The loops are written to
// compile to selects, not branches (a max pool on random data mispredicts otherwise).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional::detail {

/// The input rows [lo, hi) covered by output row `o` (clipped to the input).
inline index_range window_rows(std::size_t o, std::size_t stride, std::size_t pad, std::size_t kernel,
                               std::size_t size) {
  const std::size_t start = o * stride;  // in padded coordinates
  const std::size_t lo = start > pad ? start - pad : 0;
  const std::size_t end = start + kernel;
  const std::size_t hi = end > pad ? std::min(end - pad, size) : 0;
  return {lo, hi};
}

/// max_pool_plane without padding: no window is clipped, so each kernel tap is applied to a
/// whole output row at once (a loop over ow that the compiler turns into vector selects).
template <class T>
void max_pool_plane_unpadded(const T* x, const conv_geometry& g, T* y, std::uint32_t* argmax) {
  for (std::size_t oh = 0; oh < g.oh; ++oh) {
    T* m = y + oh * g.ow;
    std::uint32_t* best = argmax + oh * g.ow;
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      const std::size_t row = (oh * g.sh + kh) * g.w;
      for (std::size_t kw = 0; kw < g.kw; ++kw) {
        const T* in = x + row + kw;
        const auto first = static_cast<std::uint32_t>(row + kw);
        const auto step = static_cast<std::uint32_t>(g.sw);
        if (kh == 0 && kw == 0) {
          for (std::size_t ow = 0; ow < g.ow; ++ow) {
            m[ow] = in[ow * g.sw];
            best[ow] = first + static_cast<std::uint32_t>(ow) * step;
          }
          continue;
        }
        for (std::size_t ow = 0; ow < g.ow; ++ow) {
          const T v = in[ow * g.sw], cur = m[ow];
          const bool take = (v > cur) | ((v != v) & (cur == cur));  // first maximum; a NaN wins
          m[ow] = take ? v : cur;
          best[ow] = take ? first + static_cast<std::uint32_t>(ow) * step : best[ow];
        }
      }
    }
  }
}

/// y = max over each window of one plane; argmax[k] = the plane index of the first maximum.
template <class T>
void max_pool_plane(const T* x, const conv_geometry& g, T* y, std::uint32_t* argmax) {
  if (g.ph == 0 && g.pw == 0) {
    max_pool_plane_unpadded(x, g, y, argmax);
    return;
  }
  for (std::size_t oh = 0; oh < g.oh; ++oh) {
    const index_range r = window_rows(oh, g.sh, g.ph, g.kh, g.h);
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      const index_range c = window_rows(ow, g.sw, g.pw, g.kw, g.w);
      std::size_t best = r.lo * g.w + c.lo;
      T m = x[best];
      for (std::size_t ih = r.lo; ih < r.hi; ++ih) {
        for (std::size_t iw = c.lo; iw < c.hi; ++iw) {
          const std::size_t k = ih * g.w + iw;
          const T v = x[k];
          const bool take = (v > m) | ((v != v) & (m == m));  // first maximum; a NaN wins
          best = take ? k : best;                           // selects, not branches
          m = take ? v : m;
        }
      }
      y[oh * g.ow + ow] = m;
      argmax[oh * g.ow + ow] = static_cast<std::uint32_t>(best);
    }
  }
}

/// y = sum over each window / (KH * KW), for one plane.
template <class T>
void avg_pool_plane(const T* x, const conv_geometry& g, T* y) {
  const T scale = T(1) / T(g.kh * g.kw);
  for (std::size_t oh = 0; oh < g.oh; ++oh) {
    const index_range r = window_rows(oh, g.sh, g.ph, g.kh, g.h);
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      const index_range c = window_rows(ow, g.sw, g.pw, g.kw, g.w);
      T total = 0;
      for (std::size_t ih = r.lo; ih < r.hi; ++ih)
        for (std::size_t iw = c.lo; iw < c.hi; ++iw) total += x[ih * g.w + iw];
      y[oh * g.ow + ow] = total * scale;
    }
  }
}

/// dx += the adjoint of avg_pool_plane applied to dy.
template <class T>
void avg_pool_backward_plane(const T* dy, const conv_geometry& g, T* dx) {
  const T scale = T(1) / T(g.kh * g.kw);
  for (std::size_t oh = 0; oh < g.oh; ++oh) {
    const index_range r = window_rows(oh, g.sh, g.ph, g.kh, g.h);
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      const index_range c = window_rows(ow, g.sw, g.pw, g.kw, g.w);
      const T v = dy[oh * g.ow + ow] * scale;
      for (std::size_t ih = r.lo; ih < r.hi; ++ih)
        for (std::size_t iw = c.lo; iw < c.hi; ++iw) dx[ih * g.w + iw] += v;
    }
  }
}

}  // namespace xquant::nn::functional::detail
