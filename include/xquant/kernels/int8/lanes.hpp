#pragma once
// Lane helpers shared by the int8 kernels (kernels/int8/): the widening byte load and the
// unsigned byte max that xsimd 8.1 lacks or emulates, and the loop that walks channels with
// ever narrower batches.
//
// Widening. xsimd 8.1 converts uint8 -> int32 on load with a scalar loop; x86 has one
// instruction for it from SSE4.1 on (pmovzxbd) and two unpacks with zero on SSE2. Other
// archs (AVX1, NEON) take the portable scalar path, which gives the same lanes.
//
// int32 multiply (low 32 bits of the product). xsimd 8.1 has none on SSE2 and falls back to
// a scalar loop; SSE2 gets the classic two pmuludq (even and odd lanes) and a shuffle,
// SSE4.1 and up pmulld.
//
// Unsigned byte max. SSE2 has pmaxub, but xsimd 8.1 emulates max on SSE2 with a compare and
// select (and the compare needs a sign flip for unsigned bytes); SSE4.1 and up use pmaxub.
//
// Narrower batches. NHWC kernels vectorise over channels, and channel counts are not always
// a multiple of the widest batch (an AVX-512 int32 batch is 16 channels, a uint8 batch 64).
// for_blocks runs full batches of Arch, then of the next narrower instruction set of the
// same family (AVX-512 -> AVX2 -> SSE4.2, which the wider one implies), and leaves the
// last few elements to the caller's scalar code: 24 channels on AVX-512 are one 16-lane
// and one 8-lane int32 batch instead of 16 lanes and 8 scalar channels.
//
// (Candidates for kernels/simd.hpp, the house's one door to xsimd; they live here so that
// the int8 kernels do not touch that shared header.)

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8::lanes {

template <class T, class A>
using batch = xsimd::batch<T, A>;

// ---- narrower instruction set ------------------------------------------------------------

template <class Arch, class = void>
struct narrower {
  using type = void;  // 128-bit archs, and anything not x86
};
#if XSIMD_WITH_AVX2
template <class Arch>
struct narrower<Arch, std::enable_if_t<std::is_base_of_v<xsimd::avx512f, Arch>>> {
  using type = xsimd::avx2;
};
#endif
#if XSIMD_WITH_SSE4_2
template <class Arch>
struct narrower<Arch, std::enable_if_t<std::is_base_of_v<xsimd::avx, Arch>>> {
  using type = xsimd::sse4_2;
};
#endif

/// The next narrower instruction set that Arch implies and that is compiled in, or void.
template <class Arch>
using narrower_t = typename narrower<Arch>::type;

/// Calls block(B{}, i) for consecutive full batches of T, [i, i + batch<T, B>::size), from
/// `begin` on inside [begin, end): first B = Arch, then the narrower archs. Returns the first
/// index not covered (end minus fewer elements than the narrowest batch holds).
///
/// `block` is taken by value, and the kernels' blocks capture their scalars by value: the
/// kernels store through uint8_t*, which may alias any object, so a block that read its
/// constants through references (or through a closure the caller still sees) would reload
/// them after every store.
template <class T, class Arch, class Block>
std::size_t for_blocks(std::size_t begin, std::size_t end, Block block) noexcept {
  constexpr std::size_t width = batch<T, Arch>::size;
  std::size_t i = begin;
  for (; i + width <= end; i += width) block(Arch{}, i);
  if constexpr (std::is_void_v<narrower_t<Arch>>) {
    return i;
  } else {
    return for_blocks<T, narrower_t<Arch>>(i, end, block);
  }
}

// ---- primitives --------------------------------------------------------------------------

namespace detail {

template <class A>
batch<std::int32_t, A> load_u8_as_i32(const std::uint8_t* p, xsimd::generic) noexcept {
  alignas(A::alignment()) std::int32_t wide[batch<std::int32_t, A>::size];
  for (std::size_t i = 0; i < batch<std::int32_t, A>::size; ++i) wide[i] = p[i];
  return batch<std::int32_t, A>::load_aligned(wide);
}
template <class A>
batch<std::uint8_t, A> max_u8(batch<std::uint8_t, A> a, batch<std::uint8_t, A> b, xsimd::generic) noexcept {
  return xsimd::max(a, b);
}
template <class A>
batch<std::int32_t, A> mul_i32(batch<std::int32_t, A> a, batch<std::int32_t, A> b, xsimd::generic) noexcept {
  return a * b;
}

#if XSIMD_WITH_SSE2
inline __m128i load_4_bytes(const std::uint8_t* p) noexcept {
  std::int32_t bytes;
  std::memcpy(&bytes, p, 4);
  return _mm_cvtsi32_si128(bytes);
}
template <class A>
batch<std::int32_t, A> load_u8_as_i32(const std::uint8_t* p, xsimd::sse2) noexcept {
  const __m128i zero = _mm_setzero_si128();
  return _mm_unpacklo_epi16(_mm_unpacklo_epi8(load_4_bytes(p), zero), zero);
}
template <class A>
batch<std::uint8_t, A> max_u8(batch<std::uint8_t, A> a, batch<std::uint8_t, A> b, xsimd::sse2) noexcept {
  return _mm_max_epu8(a, b);
}
template <class A>
batch<std::int32_t, A> mul_i32(batch<std::int32_t, A> a, batch<std::int32_t, A> b, xsimd::sse2) noexcept {
  // The low halves of the 64-bit unsigned products are the low halves of the signed ones.
  const __m128i even = _mm_mul_epu32(a, b);                                         // lanes 0, 2
  const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), _mm_srli_epi64(b, 32));  // lanes 1, 3
  return _mm_unpacklo_epi32(_mm_shuffle_epi32(even, _MM_SHUFFLE(0, 0, 2, 0)),
                            _mm_shuffle_epi32(odd, _MM_SHUFFLE(0, 0, 2, 0)));
}
#endif

#if XSIMD_WITH_SSE4_1
template <class A>
batch<std::int32_t, A> load_u8_as_i32(const std::uint8_t* p, xsimd::sse4_1) noexcept {
  return _mm_cvtepu8_epi32(load_4_bytes(p));
}
template <class A>
batch<std::int32_t, A> mul_i32(batch<std::int32_t, A> a, batch<std::int32_t, A> b, xsimd::sse4_1) noexcept {
  return _mm_mullo_epi32(a, b);
}
#endif

#if XSIMD_WITH_AVX2
template <class A>
batch<std::int32_t, A> load_u8_as_i32(const std::uint8_t* p, xsimd::avx2) noexcept {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
#endif

#if XSIMD_WITH_AVX512F
template <class A>
batch<std::int32_t, A> load_u8_as_i32(const std::uint8_t* p, xsimd::avx512f) noexcept {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#endif

}  // namespace detail

/// The batch<int32_t, A>::size bytes at p (unaligned), zero-extended to int32 lanes.
template <class A>
batch<std::int32_t, A> load_u8_as_i32(const std::uint8_t* p) noexcept {
  return detail::load_u8_as_i32<A>(p, A{});
}

/// Lane-wise a * b, the low 32 bits (wrapping; the kernels' products are exact).
template <class A>
batch<std::int32_t, A> mul_i32(batch<std::int32_t, A> a, batch<std::int32_t, A> b) noexcept {
  return detail::mul_i32<A>(a, b, A{});
}

/// Lane-wise maximum of unsigned bytes.
template <class A>
batch<std::uint8_t, A> max_u8(batch<std::uint8_t, A> a, batch<std::uint8_t, A> b) noexcept {
  return detail::max_u8<A>(a, b, A{});
}

}  // namespace xquant::kernels::int8::lanes
XQUANT_SIMD_END
