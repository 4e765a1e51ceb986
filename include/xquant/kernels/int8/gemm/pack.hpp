#pragma once
// Packed int8 weights: W [N][K] (output channel major) rearranged once, at conversion time,
// into the layout every int8 GEMM path reads with aligned, unit-stride vector loads.
//
// Layout. The N columns of the product (output channels) are cut into panels of
// panel_cols = 64 columns; the last panel holds the rest rounded up to a multiple of 16
// (its padding columns are zero). Inside a panel of width P, k runs in groups of 4 (the last
// group zero-padded past K) and group g stores, for each column c, the 4 bytes
// W[c][4g .. 4g+3] next to each other:
//
//   byte (panel p, group g, column c, j) at  p * 64 * 4G  +  g * 4P  +  4c + j,  G = ceil(K / 4)
//
// Why: vpdpbusd multiplies, in each 32-bit lane, 4 unsigned bytes of A by 4 signed bytes of
// W and adds the 4 products to the lane; with one column per lane, a group of 16 columns is
// one aligned 64-byte load and the A operand is the 4 bytes A[m][4g..4g+3] broadcast to
// every lane. A 512-bit tile covers a whole panel (4 vectors); the 256-bit and xsimd paths
// walk a panel in narrower column tiles (8 or 16 columns), which 16 divides. Panels start at
// multiples of 256 bytes and groups at multiples of 64, so with a 64-byte aligned buffer all
// W loads are aligned. The layout is the same for every path: a model is packed once.
//
// Column sums: sum_k W[n][k] for each output channel n, kept for the converter, which folds
// the input zero point into the bias (bias[n] - a_zp * sum[n]). Accumulator bounds:
// 255 * sum_k |W[n][k]|, the largest |sum_k A[m][k] W[n][k]| any uint8 A can give, which
// lets the epilogue take the folded requantization (requant_fold.hpp).

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/reference/int8/gemm.hpp"
#include "xquant/kernels/requant_fold.hpp"

namespace xquant::kernels::int8 {

inline constexpr std::size_t panel_cols = 64;     ///< columns of a full panel
inline constexpr std::size_t panel_granule = 16;  ///< the last panel's width is a multiple of this
inline constexpr std::size_t k_group = 4;         ///< k steps per 32-bit lane

namespace gemm_detail {

/// std::allocator with 64-byte (cache line, zmm) alignment.
template <class T>
struct aligned_allocator {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};
  aligned_allocator() = default;
  template <class U>
  aligned_allocator(const aligned_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, alignment); }
  friend bool operator==(const aligned_allocator&, const aligned_allocator&) { return true; }
};

constexpr std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }
constexpr std::size_t round_up(std::size_t a, std::size_t b) { return ceil_div(a, b) * b; }

}  // namespace gemm_detail

/// W [N][K] in the packed layout above, with its column sums. Built by pack_weights.
class packed_weights {
 public:
  packed_weights() = default;

  std::size_t n() const noexcept { return n_; }  ///< output channels (columns of C)
  std::size_t k() const noexcept { return k_; }  ///< reduction length
  std::size_t groups() const noexcept { return gemm_detail::ceil_div(k_, k_group); }
  std::size_t panels() const noexcept { return gemm_detail::ceil_div(n_, panel_cols); }

  /// Width of panel p: 64, or for the last panel the remaining columns rounded up to 16.
  std::size_t panel_width(std::size_t p) const noexcept {
    const std::size_t rest = n_ - p * panel_cols;
    return rest >= panel_cols ? panel_cols : gemm_detail::round_up(rest, panel_granule);
  }

  /// First byte of panel p (64-byte aligned).
  const std::int8_t* panel(std::size_t p) const noexcept {
    return data_.data() + p * panel_cols * k_group * groups();
  }

  /// sum_k W[n][k] per output channel n.
  std::span<const std::int32_t> column_sums() const noexcept { return sums_; }

  /// 255 * sum_k |W[n][k]| per output channel n: a bound on the dot product with any uint8 row.
  std::span<const std::int64_t> acc_bounds() const noexcept { return bounds_; }

  /// Bytes of packed data (N rounded up to 16, K to 4).
  std::size_t bytes() const noexcept { return data_.size(); }

 private:
  friend packed_weights pack_weights(const std::int8_t* w, std::size_t n, std::size_t k);
  std::size_t n_ = 0, k_ = 0;
  std::vector<std::int8_t, gemm_detail::aligned_allocator<std::int8_t>> data_;
  std::vector<std::int32_t> sums_;
  std::vector<std::int64_t> bounds_;
};

/// Packs W [n][k] (row-major, contiguous). Throws value_error for a null w with n * k > 0.
inline packed_weights pack_weights(const std::int8_t* w, std::size_t n, std::size_t k) {
  check<value_error>(w != nullptr || n == 0 || k == 0, "int8 gemm: null weights for a ", n, " x ", k, " matrix");
  packed_weights out;
  out.n_ = n;
  out.k_ = k;
  const std::size_t groups = out.groups();
  out.data_.assign(gemm_detail::round_up(n, panel_granule) * k_group * groups, 0);
  for (std::size_t p = 0; p < out.panels(); ++p) {
    const std::size_t width = out.panel_width(p);
    std::int8_t* dst = out.data_.data() + p * panel_cols * k_group * groups;
    for (std::size_t c = 0; c < width && p * panel_cols + c < n; ++c) {
      const std::int8_t* row = w + (p * panel_cols + c) * k;
      for (std::size_t q = 0; q < k; ++q) dst[q / k_group * k_group * width + c * k_group + q % k_group] = row[q];
    }
  }
  out.sums_.resize(n);
  if (k > 0) reference::int8::weight_sums(w, n, k, out.sums_.data());
  out.bounds_.resize(n);
  for (std::size_t c = 0; c < n; ++c) out.bounds_[c] = k > 0 ? uint8_dot_bound(w + c * k, k) : 0;
  return out;
}

}  // namespace xquant::kernels::int8
