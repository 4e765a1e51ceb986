#pragma once
// Depthwise 3x3 convolution (stride 1 or 2, padding 1) on uint8 NHWC activations; equals
// reference::int8::depthwise3x3 byte for byte (kernels/reference/int8/depthwise.hpp has the
// arithmetic and the padding scheme).
//
// Vectorised over channels: one int32 lane per channel, so a batch of channels is
//   acc = bias + sum over 9 taps of widen(x_tap[c..]) * w_tap[c..]
// (pmovzxbd loads, pmulld, paddd), then the fixed-point requantization of
// kernels/requantize.hpp (the same lanes code, so the same bits) and a clamped narrowing
// store. Products and sums are exact in int32 (|acc| < 2^31, see the reference).
//
// Packing (once per layer, pack_depthwise3x3): weights tap-major [9][c] and widened to
// int32 (so a tap's weights are a plain vector load, no widening shuffle per pixel), the
// folded bias, and the input zero point.
//
// Addressing (the pmulld rows): each image is first copied into a one-pixel frame of the
// zero point (frame.hpp; the caller's scratch, depthwise_scratch bytes), so tap t of every
// output pixel is at the same offset from the pixel's first framed input byte and no pixel
// tests the border. Measured alternatives: a table of 9 pointers per pixel, choosing image
// or padding per tap, cost more than the arithmetic with 16 channels (1.2 ns per output,
// now 0.3); tables for the border pixels only, no copy, made mobilenet's five layers 1.5x
// slower than the copy does. (The VNNI rows below need neither.)
//
// Requantization: float-folded (requant_fold.hpp: an add, a conversion and an FMA per
// lane, where the arch has a hardware FMA) or folded (one 64-bit multiply-add and shift per
// lane) for every chunk of channels whose accumulator bounds allow it, which real layers'
// do; the constants are derived once per call and chunk of up to 256 channels, on the
// stack. Otherwise kernels/requantize.hpp's fixed-point lanes. All give the same bits.
//
// VNNI (AVX-512 VNNI builds, whole 16-channel zmm blocks): a kernel row's three taps are
// one vpdpbusd. Each int32 lane (a channel) holds the bytes of four consecutive input
// columns, oldest first, and the packed row weights are the bytes (0, w0, w1, w2): the dot
// product of the lane's 4 bytes with them is w0 x[j-1] + w1 x[j] + w2 x[j+1], the row's
// sum for the output pixel centred on column j. The next pixel's lane is this one shifted
// down by one byte with the next column entering at the top (vpshrdd, AVX-512 VBMI2; a
// shift pair and an or without it), so a pixel costs three widening loads, three shifts
// and three vpdpbusd instead of three loads, nine pmulld and nine adds (stride 2: two
// columns enter per pixel). The oldest byte meets the zero weight. u8 x s8 products summed
// exactly in int32 (the non-saturating vpdpbusd): the same accumulator. These rows read
// the image itself, not a framed copy: the padding columns enter as lanes of the zero
// point (the left one before the first pixel, the right one in the last pixel when its
// window reaches it) and a padding row is read from a row of zero points in scratch. So a
// layer whose channels are whole blocks copies nothing. Measured on Zen 4, bench_int8_ops,
// 144 channels on 28x28: stride 1 27.7 us against 51.1 for the framed pmulld loop, stride 2
// 9.5 against 15.0.
//
// Loop order: channel chunks, images, output rows, channel blocks, the row's pixels: a
// block's 9 weight vectors, bias and requantization constants stay in registers for the
// whole row. Channels past the last full batch use narrower batches (lanes::for_blocks),
// the last few plain scalar code with the reference's requantization.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/int8/frame.hpp"
#include "xquant/kernels/int8/lanes.hpp"
#include "xquant/kernels/reference/int8/depthwise.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

/// A depthwise 3x3 layer's weights in the kernel's layout (built once by pack_depthwise3x3).
struct depthwise_packed {
  std::size_t channels = 0;
  std::vector<std::int32_t> weights;  ///< [9][channels], tap = 3 * kh + kw
  std::vector<std::int32_t> bias;     ///< [channels], folded (see the reference)
  std::vector<std::int64_t> bound;    ///< [channels], |bias| + 255 * sum |w|: bounds |acc|
  std::vector<std::int32_t> row_bytes;  ///< [3][channels], kernel row kh's bytes (0, w0, w1, w2)
  std::uint8_t zero_point = 0;        ///< of the input: what padding taps read
};

/// weights: [c][3][3] int8 (PyTorch's [c][1][3][3]); bias: [c] int32 with the input zero
/// point folded in. Throws shape_error for mismatched sizes and value_error for a zero point
/// outside [0, 255] or a |bias| above max_depthwise_bias.
inline depthwise_packed pack_depthwise3x3(std::span<const std::int8_t> weights, std::span<const std::int32_t> bias,
                                          std::int32_t input_zero_point) {
  const std::size_t c = bias.size();
  check<shape_error>(c > 0 && weights.size() == 9 * c, "depthwise 3x3: ", weights.size(), " weights for ", c,
                     " channels (want 9 per channel)");
  check<value_error>(input_zero_point >= 0 && input_zero_point <= 255, "depthwise 3x3: input zero point ",
                     input_zero_point, " is outside [0, 255]");
  depthwise_packed p;
  p.channels = c;
  p.weights.resize(9 * c);
  p.bound.resize(c);
  p.row_bytes.resize(3 * c);
  for (std::size_t ch = 0; ch < c; ++ch) {
    check<value_error>(bias[ch] >= -max_depthwise_bias && bias[ch] <= max_depthwise_bias, "depthwise 3x3: bias[", ch,
                       "] = ", bias[ch], " is outside [-2^30, 2^30]");
    for (std::size_t tap = 0; tap < 9; ++tap) p.weights[tap * c + ch] = weights[ch * 9 + tap];
    for (std::size_t kh = 0; kh < 3; ++kh) {
      std::uint32_t bytes = 0;  // byte 0 stays 0: the lane's oldest column
      for (std::size_t kw = 0; kw < 3; ++kw) {
        bytes |= std::uint32_t{static_cast<std::uint8_t>(weights[ch * 9 + kh * 3 + kw])} << (8 * (kw + 1));
      }
      p.row_bytes[kh * c + ch] = static_cast<std::int32_t>(bytes);
    }
    p.bound[ch] = std::abs(std::int64_t{bias[ch]}) + uint8_dot_bound(weights.data() + ch * 9, 9);
  }
  p.bias.assign(bias.begin(), bias.end());
  p.zero_point = static_cast<std::uint8_t>(input_zero_point);
  return p;
}

/// Throws shape_error unless the input, the packed weights and the requantization have the
/// same number of channels (the kernel trusts it).
inline void check_depthwise(const depthwise_geometry& g, const depthwise_packed& w, const requant_channel_params& rq) {
  check<shape_error>(g.in.c == w.channels && rq.channels() == w.channels, "depthwise 3x3: input has ", g.in.c,
                     " channels, the weights ", w.channels, ", the requantization ", rq.channels());
}

/// The frame depthwise3x3 copies each image into (padding 1 on every side).
inline constexpr frame_sides depthwise_frame{1, 1, 1, 1};

/// Scratch bytes depthwise3x3 needs: one framed image.
inline std::size_t depthwise_scratch(const depthwise_geometry& g) noexcept {
  return depthwise_frame.bytes({1, g.in.h, g.in.w, g.in.c});
}

namespace detail {

/// One output row of a depthwise layer: its count pixels read their taps at in + p * step +
/// offset[t] (framed input), write out + p * channels.
struct depthwise_row {
  const std::uint8_t* in;
  std::size_t step, count;
  std::array<std::size_t, 9> offset;
  std::uint8_t* out;
};

/// The unfolded requantization of a batch of channels (kernels/requantize.hpp).
template <bool Clamp, class A>
struct fixed_requant {
  kernels::detail::fixed_lanes<A, kernels::detail::u64<A>> k;
  fixed_requant(const requant_channel_args& rq, std::size_t c) noexcept : k(kernels::detail::fixed_lanes_at<A>(rq, c)) {}
  XQUANT_SIMD_INLINE xsimd::batch<std::int32_t, A> operator()(xsimd::batch<std::int32_t, A> acc) const noexcept {
    return kernels::detail::fixed_batch<Clamp>(acc, k);
  }
};

/// The float-folded requantization of a batch of channels as an int32 before the clamp
/// (kernels/requantize.hpp, float_folded_lanes::rounded).
template <class A>
struct float_requant {
  kernels::detail::float_folded_lanes<A> k;
  XQUANT_SIMD_INLINE xsimd::batch<std::int32_t, A> operator()(xsimd::batch<std::int32_t, A> acc) const noexcept {
    return k.rounded(acc);
  }
};

/// Channels per chunk of folded constants (9 KB on the stack).
inline constexpr std::size_t folded_chunk = 256;

/// The requantization constants of one chunk of channels: float-folded, folded or neither
/// (then fixed_requant, from the arguments), as requant_fold.hpp allows.
struct chunk_requant {
  bool float_folded = false, folded = false;
  kernels::detail::float_folded_channels<folded_chunk> float_folds;
  kernels::detail::folded_channels<folded_chunk> folds;

  /// For channels c0 .. c0 + count - 1 of rq with accumulator bounds `bound` (null: none
  /// known). The bias starts the accumulator, so it is folded as 0; bound holds it.
  void prepare(const requant_channel_args& rq, const std::int64_t* bound, std::size_t c0, std::size_t count) noexcept {
    if constexpr (simd::has_fused_multiply_add<simd::default_arch>) {  // else no arch here uses it
      float_folded = bound != nullptr && rq.qmin >= 0 && rq.qmax <= 255 &&
                     float_folds.fold(rq, nullptr, bound, c0, count);
    }
    folded = bound != nullptr && folds.fold(rq, nullptr, bound, c0, count);  // for the archs without an FMA
  }
};

#if defined(__AVX512VNNI__) && XSIMD_WITH_AVX512BW
#define XQUANT_DEPTHWISE_VNNI 1
/// Lanes of 4 consecutive input columns (see the header): shifts out the oldest byte,
/// shifts in x's.
XQUANT_SIMD_INLINE __m512i shift_in_column(__m512i lanes, __m512i x) noexcept {
#if defined(__AVX512VBMI2__)
  return _mm512_shrdi_epi32(lanes, x, 8);  // low half of (x : lanes) >> 8
#else
  return _mm512_or_si512(_mm512_srli_epi32(lanes, 8), _mm512_slli_epi32(x, 24));
#endif
}

/// One output row read from the unframed image (the VNNI path): input row kh of the window
/// starts at in[kh] (channel 0), or at a row of zero points above or below the image.
struct depthwise_image_row {
  std::array<const std::uint8_t*, 3> in;
  std::size_t in_w, count;
  std::uint8_t* out;
};

/// Input column j of 16 channels, widened to int32 lanes; j = in_w is the right padding.
template <bool MayPad>
XQUANT_SIMD_INLINE __m512i vnni_column(const std::uint8_t* row, std::size_t j, std::size_t in_w, std::size_t channels,
                                       __m512i pad) noexcept {
  if (MayPad && j >= in_w) return pad;
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j * channels)));
}

/// Output pixel p: the lanes take in the columns it adds (p + 1 at stride 1, 2p and 2p + 1
/// at stride 2), so that their top three bytes are its window's columns, then one vpdpbusd
/// per kernel row. MayPad: p is the last pixel, whose last column may be the right padding.
template <std::size_t Stride, bool MayPad, class Requant>
XQUANT_SIMD_INLINE void vnni_pixel(__m512i (&lanes)[3], const __m512i (&weight)[3], __m512i bias,
                                   const std::uint8_t* const (&in)[3], std::size_t p, std::size_t in_w,
                                   std::size_t channels, __m512i pad, const Requant& requant, int qmin, int qmax,
                                   std::uint8_t* out) noexcept {
  __m512i acc = bias;
#pragma GCC unroll 3
  for (std::size_t kh = 0; kh < 3; ++kh) {
#pragma GCC unroll 2
    for (std::size_t j = Stride * p + 2 - Stride; j < Stride * p + 2; ++j)
      lanes[kh] = shift_in_column(lanes[kh], vnni_column<MayPad>(in[kh], j, in_w, channels, pad));
    acc = _mm512_dpbusd_epi32(acc, lanes[kh], weight[kh]);
  }
  using A = xsimd::avx512bw;
  simd::store_clamped<std::uint8_t, A>(out, requant(xsimd::batch<std::int32_t, A>(acc)), qmin, qmax);
}

/// Channels [c, c + 16) of one output row with vpdpbusd (see the header), stride 1 or 2,
/// from the unframed image: the left padding column is shifted in before the first pixel,
/// the right one (when the window reaches it) in the last. Requant and store as
/// depthwise_block.
template <std::size_t Stride, class Requant>
void depthwise_row_vnni(const depthwise_image_row& row, std::size_t c, const depthwise_packed& w,
                        const Requant requant, int qmin, int qmax) noexcept {
  static_assert(Stride == 1 || Stride == 2);
  const std::size_t channels = w.channels, in_w = row.in_w, count = row.count;
  const __m512i bias = _mm512_loadu_si512(w.bias.data() + c);
  const __m512i pad = _mm512_set1_epi32(w.zero_point);
  const std::uint8_t* const in[3] = {row.in[0] + c, row.in[1] + c, row.in[2] + c};
  __m512i weight[3], lanes[3];
#pragma GCC unroll 3
  for (std::size_t kh = 0; kh < 3; ++kh) {
    weight[kh] = _mm512_loadu_si512(w.row_bytes.data() + kh * channels + c);
    lanes[kh] = shift_in_column(_mm512_setzero_si512(), pad);  // column -1
    if constexpr (Stride == 1)
      lanes[kh] = shift_in_column(lanes[kh], vnni_column<false>(in[kh], 0, in_w, channels, pad));  // column 0
  }
  std::uint8_t* out = row.out + c;
  for (std::size_t p = 0; p + 1 < count; ++p, out += channels)
    vnni_pixel<Stride, false>(lanes, weight, bias, in, p, in_w, channels, pad, requant, qmin, qmax, out);
  vnni_pixel<Stride, true>(lanes, weight, bias, in, count - 1, in_w, channels, pad, requant, qmin, qmax, out);
}
#else
#define XQUANT_DEPTHWISE_VNNI 0
#endif

/// Channels [c, c + batch) of one output row, requantized by `requant` (fixed_requant or
/// float_requant above, or kernels::detail::folded_lanes).
template <class A, class Requant>
void depthwise_block(const depthwise_row& row, std::size_t c, const depthwise_packed& w, const Requant requant,
                     int qmin, int qmax) noexcept {
  using i32 = xsimd::batch<std::int32_t, A>;
  const std::size_t channels = w.channels, step = row.step;  // locals: the uint8_t stores may alias
  const i32 bias = i32::load_unaligned(w.bias.data() + c);
  std::array<i32, 9> weight;  // in registers: the tap loops are unrolled
#pragma GCC unroll 9
  for (std::size_t t = 0; t < 9; ++t) weight[t] = i32::load_unaligned(w.weights.data() + t * channels + c);
  const std::array<std::size_t, 9> offset = row.offset;
  const std::uint8_t* in = row.in + c;
  std::uint8_t* out = row.out + c;
  const auto finish = [&](i32 acc) { simd::store_clamped<std::uint8_t, A>(out, requant(acc), qmin, qmax); };
  if (step == channels) {
    // Stride 1: pixel p + 1's taps kw = 0, 1 are pixel p's kw = 1, 2, so the widened input
    // columns slide along in registers and each pixel loads 3 new ones, not 9 (the loads
    // widen bytes to int32: two micro-ops each, a fifth of the pixel's work).
    i32 x[3][3];
#pragma GCC unroll 3
    for (std::size_t kh = 0; kh < 3; ++kh) {
      x[kh][1] = lanes::load_u8_as_i32<A>(in + offset[kh * 3]);
      x[kh][2] = lanes::load_u8_as_i32<A>(in + offset[kh * 3 + 1]);
    }
    for (std::size_t p = 0; p < row.count; ++p, in += step, out += channels) {
      i32 acc[3] = {bias, i32(0), i32(0)};  // one add chain per kernel row
#pragma GCC unroll 3
      for (std::size_t kh = 0; kh < 3; ++kh) {
        x[kh][0] = x[kh][1];
        x[kh][1] = x[kh][2];
        x[kh][2] = lanes::load_u8_as_i32<A>(in + offset[kh * 3 + 2]);
#pragma GCC unroll 3
        for (std::size_t kw = 0; kw < 3; ++kw) acc[kh] += lanes::mul_i32(x[kh][kw], weight[kh * 3 + kw]);
      }
      finish(acc[0] + acc[1] + acc[2]);
    }
    return;
  }
  for (std::size_t p = 0; p < row.count; ++p, in += step, out += channels) {
    // Two partial sums: the adds form two chains of 4-5 instead of one of 9.
    i32 acc[2] = {bias, i32(0)};
#pragma GCC unroll 9
    for (std::size_t t = 0; t < 9; ++t)
      acc[t % 2] += lanes::mul_i32(lanes::load_u8_as_i32<A>(in + offset[t]), weight[t]);
    finish(acc[0] + acc[1]);
  }
}

/// Calls run(requant) with the requantization of the channel batch at cb: float-folded
/// (where A has a hardware FMA) or folded when the chunk from c0 allowed it, else
/// kernels/requantize.hpp's fixed-point lanes.
template <class A, class Run>
XQUANT_SIMD_INLINE void with_requant(const chunk_requant& chunk, std::size_t c0, const requant_channel_args& rq,
                                     std::size_t cb, Run run) noexcept {
  using i32 = xsimd::batch<std::int32_t, A>;
  if constexpr (simd::has_fused_multiply_add<A>) {
    if (chunk.float_folded) return run(float_requant<A>{{chunk.float_folds, cb - c0}});
  }
  if (chunk.folded) {
    run(kernels::detail::folded_lanes<A>(chunk.folds, cb - c0));
  } else if (xsimd::any(i32::load_unaligned(rq.shift + cb) < i32(32))) {
    run(fixed_requant<true, A>(rq, cb));
  } else {
    run(fixed_requant<false, A>(rq, cb));
  }
}

/// The channels depthwise3x3 runs through the VNNI rows on Arch: the whole 16-channel
/// blocks when this build has them, else none.
template <class Arch>
std::size_t vnni_channels(const depthwise_packed& w) noexcept {
#if XQUANT_DEPTHWISE_VNNI
  if constexpr (std::is_base_of_v<xsimd::avx512bw, Arch>) {
    if (w.row_bytes.size() == 3 * w.channels) return w.channels / 16 * 16;
  }
#endif
  (void)w;
  return 0;
}

#if XQUANT_DEPTHWISE_VNNI
/// Output row oh of image n, channels [c0, c1) (whole 16-channel blocks), by the VNNI rows.
inline void depthwise_rows_vnni(const std::uint8_t* x, const depthwise_geometry& g, std::size_t n, std::size_t oh,
                                std::size_t c0, std::size_t c1, const depthwise_packed& w,
                                const requant_channel_args& rq, const chunk_requant& chunk, std::uint8_t* out,
                                const std::uint8_t* zero_row) noexcept {
  depthwise_image_row row{};
  for (std::size_t kh = 0; kh < 3; ++kh) {
    const std::size_t ih = oh * g.stride + kh;  // input row ih - 1
    row.in[kh] = ih >= 1 && ih <= g.in.h ? x + g.in.at(n, ih - 1, 0) : zero_row;
  }
  row.in_w = g.in.w;
  row.count = g.out_w;
  row.out = out + g.out().at(n, oh, 0);
  for (std::size_t cb = c0; cb < c1; cb += 16) {
    with_requant<xsimd::avx512bw>(chunk, c0, rq, cb, [&](auto requant) {
      if (g.stride == 1) {
        depthwise_row_vnni<1>(row, cb, w, requant, rq.qmin, rq.qmax);
      } else {
        depthwise_row_vnni<2>(row, cb, w, requant, rq.qmin, rq.qmax);
      }
    });
  }
}
#endif

/// Channels [c0, c1) of one output row, scalar.
inline void depthwise_tail(const depthwise_row& row, std::size_t c0, std::size_t c1, const depthwise_packed& w,
                           const requant_channel_args& rq) noexcept {
  for (std::size_t p = 0; p < row.count; ++p) {
    const std::uint8_t* in = row.in + p * row.step;
    for (std::size_t c = c0; c < c1; ++c) {
      std::int32_t acc = w.bias[c];
      for (std::size_t t = 0; t < 9; ++t) acc += in[row.offset[t] + c] * w.weights[t * w.channels + c];
      row.out[p * w.channels + c] = reference::requantize_fixed<std::uint8_t>(acc, rq.multiplier[c], rq.shift[c],
                                                                              rq.zero_point, rq.qmin, rq.qmax);
    }
  }
}

}  // namespace detail

/// x: [n][h][w][c] with g.in.c == w.channels; rq: c channels of requantization; out:
/// [n][out_h][out_w][c] (must not overlap x); scratch: depthwise_scratch(g) bytes (must not
/// overlap either). Allocates nothing.
template <class Arch = simd::default_arch>
void depthwise3x3(const std::uint8_t* x, const depthwise_geometry& g, const depthwise_packed& w,
                  const requant_channel_args& rq, std::uint8_t* out, std::uint8_t* scratch) noexcept {
  const std::size_t c = g.in.c, framed_row = depthwise_frame.width(g.in) * c;
  // Channels [0, direct) run the VNNI rows on the image itself, the rest (all of them
  // without VNNI) the framed rows. The VNNI rows read padding rows from scratch's first
  // in.w * c bytes: zero points (also the framed image's top row).
  const std::size_t direct = detail::vnni_channels<Arch>(w);
  if (direct > 0) std::memset(scratch, w.zero_point, g.in.w * c);
  detail::depthwise_row row{};
  row.step = g.stride * c;
  row.count = g.out_w;
  for (std::size_t kh = 0; kh < 3; ++kh) {
    for (std::size_t kw = 0; kw < 3; ++kw) row.offset[kh * 3 + kw] = kh * framed_row + kw * c;
  }
  detail::chunk_requant chunk;
  for (std::size_t c0 = 0; c0 < c; c0 += detail::folded_chunk) {
    const std::size_t c1 = std::min(c, c0 + detail::folded_chunk);
    chunk.prepare(rq, w.bound.size() == c ? w.bound.data() : nullptr, c0, c1 - c0);
    const std::size_t direct_end = std::clamp(direct, c0, c1);  // folded_chunk is a multiple of 16
    for (std::size_t n = 0; n < g.in.n; ++n) {
      // Only the last chunk can hold framed channels, so one image is framed once per call.
      if (direct_end < c1) frame_image(x, g.in, n, depthwise_frame, w.zero_point, scratch);
      for (std::size_t oh = 0; oh < g.out_h; ++oh) {
#if XQUANT_DEPTHWISE_VNNI
        if (c0 < direct_end)
          detail::depthwise_rows_vnni(x, g, n, oh, c0, direct_end, w, rq, chunk, out, scratch);
#endif
        if (direct_end == c1) continue;
        row.in = scratch + oh * g.stride * framed_row;  // framed row oh * stride = input row oh * stride - 1
        row.out = out + g.out().at(n, oh, 0);
        const std::size_t done = lanes::for_blocks<std::int32_t, Arch>(
            direct_end, c1, [&row, &w, &rq, &chunk, c0](auto arch, std::size_t cb) {
              using A = decltype(arch);
              detail::with_requant<A>(chunk, c0, rq, cb, [&](auto requant) {
                detail::depthwise_block<A>(row, cb, w, requant, rq.qmin, rq.qmax);
              });
            });
        detail::depthwise_tail(row, done, c1, w, rq);
      }
    }
  }
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
