#pragma once
// Int8 GEMM with fused requantization, the specification every int8 GEMM path equals bit
// for bit (kernels/int8/gemm.hpp):
//
//   acc[m][n] = bias[n] + sum_k A[m][k] * W[n][k]            modulo 2^32, as int32
//   C[m][n]   = reference::requantize_fixed<uint8_t>(acc[m][n], multiplier[n], shift[n],
//                                                    zero_point, qmin, qmax)
//
// A: uint8 activations [M][K], row stride lda (im2col rows or a batch of dense inputs).
// W: int8 weights [N][K], output channel major, contiguous. bias: int32 [N], or null for
// zeros. C: uint8 [M][N], row stride ldc; the elements between n and ldc are not touched.
// The input zero point is folded into the bias by the converter (bias[n] -= a_zp * sum_k
// W[n][k]), so A enters as its raw uint8 codes.
//
// Overflow. |A[m][k] * W[n][k]| <= 255 * 128 = 32640, so the exact sum fits in int32 for
// every K <= 65793 (2^31 / 32640) with a zero bias, i.e. for every real layer. Beyond that
// the sum is defined modulo 2^32 (two's complement wrap), which is what every SIMD path's
// 32-bit adds compute whatever the order of the terms, so the paths still agree bit for bit.

#include <cstddef>
#include <cstdint>

#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"

namespace xquant::kernels::reference::int8 {

/// bias + sum_k a[k] * w[k] modulo 2^32 (the int64 sum cannot overflow for k < 2^48).
inline std::int32_t dot(const std::uint8_t* a, const std::int8_t* w, std::size_t k, std::int32_t bias) noexcept {
  std::int64_t sum = bias;
  for (std::size_t p = 0; p < k; ++p) sum += std::int64_t{a[p]} * w[p];
  return static_cast<std::int32_t>(sum);  // modulo 2^32 (C++20)
}

/// C = requantize(bias + A * W^T), see the top of this file.
inline void gemm(std::size_t m, std::size_t n, std::size_t k, const std::uint8_t* a, std::size_t lda,
                 const std::int8_t* w, const std::int32_t* bias, const requant_channel_args& rq, std::uint8_t* c,
                 std::size_t ldc) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      const std::int32_t acc = dot(a + i * lda, w + j * k, k, bias ? bias[j] : 0);
      c[i * ldc + j] =
          requantize_fixed<std::uint8_t>(acc, rq.multiplier[j], rq.shift[j], rq.zero_point, rq.qmin, rq.qmax);
    }
  }
}

/// sums[n] = sum_k W[n][k]: what the converter multiplies by the input zero point and
/// subtracts from the bias (|sum| <= 128 K, exact in int32 for K < 2^24).
inline void weight_sums(const std::int8_t* w, std::size_t n, std::size_t k, std::int32_t* sums) noexcept {
  for (std::size_t j = 0; j < n; ++j) {
    std::int32_t s = 0;
    for (std::size_t p = 0; p < k; ++p) s += w[j * k + p];
    sums[j] = s;
  }
}

}  // namespace xquant::kernels::reference::int8
