#pragma once
// The one door to xsimd. No other xquant header includes <xsimd/xsimd.hpp>: kernels name
// batches, architectures and the few primitives xsimd 8.1 lacks through this file, so the
// SIMD dependency (and its version quirks) lives in one place.
//
// Architectures. xsimd decides which instruction sets are *compiled in* from the compiler
// flags: a plain x86-64 build has sse2 only, -march=native on an AVX-512 machine has
// avx512bw down to sse2. `compiled_archs` is that list (best first) and `default_arch` its
// best member. `available<Arch>()` says whether the CPU running the program has Arch;
// tests use it to run every compiled-in kernel variant that can run here.
//
// Primitives. xsimd 8.1 has no widening 32x32->64 multiply; it implements per-lane 64-bit
// shifts on sse2/avx512 and narrowing int32 -> 8/16-bit stores with scalar loops, and
// emulates 32-bit min/max on SSE2 with compare and select. The helpers below fill those gaps
// with one intrinsic per x86 family (chosen by overload on the arch's base class, the way
// xsimd's own kernels are written) and a plain xsimd fallback for every other arch (NEON,
// AVX1...), which is slower but computes the same bits.
//
// Every SIMD kernel header wraps its code in XQUANT_SIMD_BEGIN / XQUANT_SIMD_END (below).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

// GCC 12 reports -W(maybe-)uninitialized inside its own AVX-512 intrinsics (the
// `__m512i __Y = __Y;` idiom of _mm512_undefined_*, GCC bug 105593, fixed in GCC 13) wherever
// they are inlined, including inside xsimd. GCC looks the diagnostic state up along the whole
// inline stack, so SIMD kernel headers wrap their code in XQUANT_SIMD_BEGIN / XQUANT_SIMD_END,
// which ignore exactly these two warnings there and nowhere else.
// clang-format off
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define XQUANT_SIMD_BEGIN                                     \
  _Pragma("GCC diagnostic push")                              \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")       \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define XQUANT_SIMD_END _Pragma("GCC diagnostic pop")
#else
#define XQUANT_SIMD_BEGIN
#define XQUANT_SIMD_END
#endif
// clang-format on

// For small per-batch helpers called from a kernel's inner loop with many values live
// (requantization inside the depthwise pixel loop): left out of line, the call makes the
// caller keep its weights and constants in memory, not registers (measured 1.5x slower).
// XQUANT_SIMD_INLINE_LAMBDA is the same for a lambda (after its parameter list).
#if defined(__GNUC__) || defined(__clang__)
#define XQUANT_SIMD_INLINE [[gnu::always_inline]] inline
#define XQUANT_SIMD_INLINE_LAMBDA __attribute__((always_inline))
#else
#define XQUANT_SIMD_INLINE inline
#define XQUANT_SIMD_INLINE_LAMBDA
#endif

XQUANT_SIMD_BEGIN
#include <xsimd/xsimd.hpp>
XQUANT_SIMD_END

XQUANT_SIMD_BEGIN
namespace xquant::simd {

template <class T, class Arch = xsimd::default_arch>
using batch = xsimd::batch<T, Arch>;

/// The best instruction set compiled in (what the Arch-less kernel overloads use).
using default_arch = xsimd::default_arch;

/// Every instruction set compiled in, best first (an xsimd::arch_list).
using compiled_archs = xsimd::supported_architectures;

/// Calls f(Arch{}) for each Arch of an xsimd::arch_list, in list order.
template <class... Archs, class F>
void for_each_arch(xsimd::arch_list<Archs...>, F&& f) {
  (f(Archs{}), ...);
}

/// True when the CPU running this program supports Arch. On x86 with GCC or Clang this asks
/// __builtin_cpu_supports (which also checks that the OS saves the AVX/AVX-512 registers):
/// xsimd 8.1's own cpuid reads the AVX bit from the wrong leaf and reports no AVX on CPUs
/// that have it, and its Arch::available() is a constant `true`.
template <class Arch>
bool available() noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  if constexpr (std::is_same_v<Arch, xsimd::avx512bw>) {
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512f");
  } else if constexpr (std::is_same_v<Arch, xsimd::avx512dq>) {
    return __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512f");
  } else if constexpr (std::is_same_v<Arch, xsimd::avx512cd>) {
    return __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512f");
  } else if constexpr (std::is_same_v<Arch, xsimd::avx512f>) {
    return __builtin_cpu_supports("avx512f");
  } else if constexpr (std::is_same_v<Arch, xsimd::fma3<xsimd::avx2>>) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  } else if constexpr (std::is_same_v<Arch, xsimd::avx2>) {
    return __builtin_cpu_supports("avx2");
  } else if constexpr (std::is_same_v<Arch, xsimd::fma3<xsimd::avx>>) {
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma");
  } else if constexpr (std::is_same_v<Arch, xsimd::avx>) {
    return __builtin_cpu_supports("avx");
  } else if constexpr (std::is_same_v<Arch, xsimd::fma4>) {
    return __builtin_cpu_supports("fma4");
  } else if constexpr (std::is_same_v<Arch, xsimd::fma3<xsimd::sse4_2>>) {
    return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("fma");
  } else if constexpr (std::is_same_v<Arch, xsimd::sse4_2>) {
    return __builtin_cpu_supports("sse4.2");
  } else if constexpr (std::is_same_v<Arch, xsimd::sse4_1>) {
    return __builtin_cpu_supports("sse4.1");
  } else if constexpr (std::is_same_v<Arch, xsimd::ssse3>) {
    return __builtin_cpu_supports("ssse3");
  } else if constexpr (std::is_same_v<Arch, xsimd::sse3>) {
    return __builtin_cpu_supports("sse3");
  } else if constexpr (std::is_same_v<Arch, xsimd::sse2>) {
    return __builtin_cpu_supports("sse2");
  } else {
    return false;
  }
#else
  // Elsewhere: xsimd's detection (exact for NEON; on x86 with MSVC it may miss AVX).
  const auto cpu = xsimd::available_architectures();
  if constexpr (std::is_same_v<Arch, xsimd::neon64>) {
    return cpu.neon64;
  } else if constexpr (std::is_same_v<Arch, xsimd::neon>) {
    return cpu.neon;
  } else {
    return Arch::version() <= cpu.best;
  }
#endif
}

// --- primitives --------------------------------------------------------------------------

namespace detail {

template <class A>
using u64 = xsimd::batch<std::uint64_t, A>;

template <class A>
u64<A> mul_even_u32(u64<A> a, u64<A> b, xsimd::generic) noexcept {
  const u64<A> low(0xFFFFFFFFull);
  return (a & low) * (b & low);
}
template <class A>
u64<A> srl_lanes(u64<A> x, u64<A> n, xsimd::generic) noexcept {
  return x >> n;
}
template <class A>
u64<A> mul_even_i32(u64<A> a, u64<A> b, xsimd::generic) noexcept {
  // Signed from unsigned: (a - 2^32 [a < 0]) (b - 2^32 [b < 0]) == a b - 2^32 ([a < 0] b +
  // [b < 0] a) modulo 2^64, with a, b the low halves read as unsigned.
  const u64<A> low(0xFFFFFFFFull), a_lo = a & low, b_lo = b & low;
  const u64<A> a_neg = xsimd::select((a_lo >> 31) != u64<A>(0), b_lo, u64<A>(0));
  const u64<A> b_neg = xsimd::select((b_lo >> 31) != u64<A>(0), a_lo, u64<A>(0));
  return a_lo * b_lo - ((a_neg + b_neg) << 32);
}
template <class A>
xsimd::batch<std::int32_t, A> interleave_low_halves(u64<A> even, u64<A> odd, xsimd::generic) noexcept {
  return xsimd::bitwise_cast<xsimd::batch<std::int32_t, A>>((even & u64<A>(0xFFFFFFFFull)) | (odd << 32));
}
template <class Out, class A>
void store_narrow(Out* dst, xsimd::batch<std::int32_t, A> v, xsimd::generic) noexcept {
  alignas(A::alignment()) std::int32_t lanes[xsimd::batch<std::int32_t, A>::size];
  v.store_aligned(lanes);
  for (std::size_t i = 0; i < xsimd::batch<std::int32_t, A>::size; ++i) dst[i] = static_cast<Out>(lanes[i]);
}

template <class Out, class A>
void store_clamped(Out* dst, xsimd::batch<std::int32_t, A> v, int lo, int hi, xsimd::generic) noexcept {
  using i32 = xsimd::batch<std::int32_t, A>;
  store_narrow<Out, A>(dst, xsimd::min(xsimd::max(v, i32(lo)), i32(hi)), A{});
}

template <class A>
void store_clamped_u8x4(std::uint8_t* dst, const xsimd::batch<std::int32_t, A> (&v)[4], int lo, int hi,
                        xsimd::generic) noexcept {
  constexpr std::size_t width = xsimd::batch<std::int32_t, A>::size;
  for (std::size_t j = 0; j < 4; ++j) store_clamped<std::uint8_t, A>(dst + j * width, v[j], lo, hi, A{});
}

#if XSIMD_WITH_SSE2
// Stores the first N (4 or 8) int16 lanes of w as Out (int16 as is, 8-bit with saturation).
template <class Out, int N>
void store_words(Out* dst, __m128i w) noexcept {
  if constexpr (sizeof(Out) == 2) {
    if constexpr (N == 4) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), w);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), w);
    }
  } else {
    const __m128i b = std::is_signed_v<Out> ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
    if constexpr (N == 4) {
      const std::int32_t bytes = _mm_cvtsi128_si32(b);
      std::memcpy(dst, &bytes, 4);
    } else {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), b);
    }
  }
}

// int32 -> int16 with saturation, then a 16-bit clamp: SSE2 has pmaxsw/pminsw but no
// 32-bit min/max (xsimd emulates those with compare and select, several times slower).
inline __m128i clamp_words(__m128i w, int lo, int hi) noexcept {
  return _mm_min_epi16(_mm_max_epi16(w, _mm_set1_epi16(static_cast<short>(lo))),
                       _mm_set1_epi16(static_cast<short>(hi)));
}

template <class A>
u64<A> mul_even_u32(u64<A> a, u64<A> b, xsimd::sse2) noexcept {
  return _mm_mul_epu32(a, b);
}
template <class A>
u64<A> srl_lanes(u64<A> x, u64<A> n, xsimd::sse2) noexcept {
  const __m128i lo = _mm_srl_epi64(x, n);                         // lane 0 correct
  const __m128i hi = _mm_srl_epi64(x, _mm_unpackhi_epi64(n, n));  // lane 1 correct
  return _mm_castpd_si128(_mm_move_sd(_mm_castsi128_pd(hi), _mm_castsi128_pd(lo)));
}
template <class A>
u64<A> mul_even_i32(u64<A> a, u64<A> b, xsimd::sse2) noexcept {
  // As the generic version, with the correction's sign masks from 32-bit arithmetic shifts.
  const __m128i fix = _mm_add_epi32(_mm_and_si128(_mm_srai_epi32(a, 31), b), _mm_and_si128(_mm_srai_epi32(b, 31), a));
  return _mm_sub_epi64(_mm_mul_epu32(a, b), _mm_slli_epi64(fix, 32));
}
template <class A>
xsimd::batch<std::int32_t, A> interleave_low_halves(u64<A> even, u64<A> odd, xsimd::sse2) noexcept {
  return _mm_or_si128(_mm_and_si128(even, _mm_set1_epi64x(0xFFFFFFFFll)), _mm_slli_epi64(odd, 32));
}
template <class Out, class A>
void store_narrow(Out* dst, xsimd::batch<std::int32_t, A> v, xsimd::sse2) noexcept {
  store_words<Out, 4>(dst, _mm_packs_epi32(v, v));
}
template <class Out, class A>
void store_clamped(Out* dst, xsimd::batch<std::int32_t, A> v, int lo, int hi, xsimd::sse2) noexcept {
  store_words<Out, 4>(dst, clamp_words(_mm_packs_epi32(v, v), lo, hi));
}
#endif

#if XSIMD_WITH_SSE4_1
template <class A>
u64<A> mul_even_i32(u64<A> a, u64<A> b, xsimd::sse4_1) noexcept {
  return _mm_mul_epi32(a, b);
}
template <class A>
xsimd::batch<std::int32_t, A> interleave_low_halves(u64<A> even, u64<A> odd, xsimd::sse4_1) noexcept {
  return _mm_blend_epi16(even, _mm_slli_epi64(odd, 32), 0xCC);
}
#endif

#if XSIMD_WITH_AVX2
template <class A>
u64<A> mul_even_i32(u64<A> a, u64<A> b, xsimd::avx2) noexcept {
  return _mm256_mul_epi32(a, b);
}
template <class A>
xsimd::batch<std::int32_t, A> interleave_low_halves(u64<A> even, u64<A> odd, xsimd::avx2) noexcept {
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}
template <class A>
u64<A> mul_even_u32(u64<A> a, u64<A> b, xsimd::avx2) noexcept {
  return _mm256_mul_epu32(a, b);
}
template <class A>
u64<A> srl_lanes(u64<A> x, u64<A> n, xsimd::avx2) noexcept {
  return _mm256_srlv_epi64(x, n);
}
template <class A>
__m128i pack_words(xsimd::batch<std::int32_t, A> v, xsimd::avx2) noexcept {
  const __m256i x = v;
  return _mm_packs_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}
template <class Out, class A>
void store_narrow(Out* dst, xsimd::batch<std::int32_t, A> v, xsimd::avx2) noexcept {
  store_words<Out, 8>(dst, pack_words(v, A{}));
}
template <class Out, class A>
void store_clamped(Out* dst, xsimd::batch<std::int32_t, A> v, int lo, int hi, xsimd::avx2) noexcept {
  store_words<Out, 8>(dst, clamp_words(pack_words(v, A{}), lo, hi));
}
#endif

#if XSIMD_WITH_AVX512F
template <class A>
u64<A> mul_even_u32(u64<A> a, u64<A> b, xsimd::avx512f) noexcept {
  return _mm512_mul_epu32(a, b);
}
template <class A>
u64<A> srl_lanes(u64<A> x, u64<A> n, xsimd::avx512f) noexcept {
  return _mm512_srlv_epi64(x, n);
}
template <class A>
u64<A> mul_even_i32(u64<A> a, u64<A> b, xsimd::avx512f) noexcept {
  return _mm512_mul_epi32(a, b);
}
template <class A>
u64<A> sra_lanes(u64<A> x, u64<A> n, xsimd::avx512f) noexcept {
  return _mm512_srav_epi64(x, n);
}
template <class A>
xsimd::batch<std::int32_t, A> interleave_low_halves(u64<A> even, u64<A> odd, xsimd::avx512f) noexcept {
  // Odd 32-bit lanes take dword 0 of odd's 64-bit lanes (vpshufd with a merge mask).
  return _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CCAA);
}
template <class Out, class A>
void store_narrow(Out* dst, xsimd::batch<std::int32_t, A> v, xsimd::avx512f) noexcept {
  // vpmovdb / vpmovdw truncate; the values are already inside Out's range.
  if constexpr (sizeof(Out) == 2) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16(v));
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(v));
  }
}
template <class Out, class A>
void store_clamped(Out* dst, xsimd::batch<std::int32_t, A> v, int lo, int hi, xsimd::avx512f) noexcept {
  store_narrow<Out, A>(
      dst, _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi)), A{});
}
#endif

// ---- fused multiply-add, low-byte store ----

// xsimd 8.1's fma is x * y + z (two roundings) on AVX-512 and on everything but the fma3
// archs, so the single-rounding one is named here, on the archs that have the instruction.
constexpr bool has_fused_multiply_add(xsimd::generic) noexcept { return false; }
template <class A>
xsimd::batch<float, A> fused_multiply_add(xsimd::batch<float, A>, xsimd::batch<float, A>, xsimd::batch<float, A>,
                                          xsimd::generic) noexcept = delete;  // no single-rounding FMA
template <class A>
void store_low_bytes(std::uint8_t* dst, xsimd::batch<std::int32_t, A> v, xsimd::generic) noexcept {
  store_narrow<std::uint8_t, A>(dst, v & xsimd::batch<std::int32_t, A>(0xFF), A{});
}
#if XSIMD_WITH_FMA3_AVX2
constexpr bool has_fused_multiply_add(xsimd::fma3<xsimd::avx2>) noexcept { return true; }
template <class A>
xsimd::batch<float, A> fused_multiply_add(xsimd::batch<float, A> x, xsimd::batch<float, A> y,
                                          xsimd::batch<float, A> z, xsimd::fma3<xsimd::avx2>) noexcept {
  return _mm256_fmadd_ps(x, y, z);
}
#endif
#if XSIMD_WITH_AVX512F
constexpr bool has_fused_multiply_add(xsimd::avx512f) noexcept { return true; }
template <class A>
xsimd::batch<float, A> fused_multiply_add(xsimd::batch<float, A> x, xsimd::batch<float, A> y,
                                          xsimd::batch<float, A> z, xsimd::avx512f) noexcept {
  return _mm512_fmadd_ps(x, y, z);
}
template <class A>
void store_low_bytes(std::uint8_t* dst, xsimd::batch<std::int32_t, A> v, xsimd::avx512f) noexcept {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(v));  // vpmovdb truncates
}
#endif

template <class A>
u64<A> sra_lanes(u64<A> x, u64<A> n, xsimd::generic) noexcept {
  // Arithmetic from logical: with h = 2^63 >> n (where the sign bit lands), ((x >> n) ^ h) - h
  // extends it. (Defined after every srl_lanes overload, so that it calls the arch's own.)
  const u64<A> h = srl_lanes<A>(u64<A>(std::uint64_t{1} << 63), n, A{});
  return (srl_lanes<A>(x, n, A{}) ^ h) - h;
}

}  // namespace detail

/// Per 64-bit lane: (a mod 2^32) * (b mod 2^32), the full 64-bit unsigned product
/// (pmuludq). The high halves of the inputs are ignored.
template <class A>
batch<std::uint64_t, A> mul_even_u32(batch<std::uint64_t, A> a, batch<std::uint64_t, A> b) noexcept {
  return detail::mul_even_u32<A>(a, b, A{});
}

/// Per 64-bit lane logical right shift, x[i] >> n[i]; each n[i] must be < 64.
template <class A>
batch<std::uint64_t, A> srl_lanes(batch<std::uint64_t, A> x, batch<std::uint64_t, A> n) noexcept {
  return detail::srl_lanes<A>(x, n, A{});
}

/// Per 64-bit lane: the signed 64-bit product of the low 32-bit halves of a and b read as
/// int32 (pmuldq), in two's complement. The high halves of the inputs are ignored.
template <class A>
batch<std::uint64_t, A> mul_even_i32(batch<std::uint64_t, A> a, batch<std::uint64_t, A> b) noexcept {
  return detail::mul_even_i32<A>(a, b, A{});
}

/// Per 64-bit lane arithmetic right shift of x read as int64 (floor(x / 2^n[i])), in two's
/// complement; each n[i] must be < 64.
template <class A>
batch<std::uint64_t, A> sra_lanes(batch<std::uint64_t, A> x, batch<std::uint64_t, A> n) noexcept {
  return detail::sra_lanes<A>(x, n, A{});
}

/// The int32 lanes whose even members are the low halves of even's 64-bit lanes and whose
/// odd members are the low halves of odd's.
template <class A>
batch<std::int32_t, A> interleave_low_halves(batch<std::uint64_t, A> even, batch<std::uint64_t, A> odd) noexcept {
  return detail::interleave_low_halves<A>(even, odd, A{});
}

/// Same, with one shift count for all lanes (one instruction everywhere).
template <class A>
batch<std::uint64_t, A> srl_lanes(batch<std::uint64_t, A> x, int n) noexcept {
  return x >> n;
}

/// Stores the int32 lanes of v narrowed to Out (int8, uint8 or int16) at dst (unaligned).
/// Every lane must already lie inside Out's range: the result is unspecified otherwise.
template <class Out, class A>
void store_narrow(Out* dst, batch<std::int32_t, A> v) noexcept {
  static_assert(std::is_same_v<Out, std::int8_t> || std::is_same_v<Out, std::uint8_t> ||
                    std::is_same_v<Out, std::int16_t>,
                "xquant: narrow outputs are int8_t, uint8_t or int16_t");
  detail::store_narrow<Out, A>(dst, v, A{});
}

/// Stores clamp(v, lo, hi) narrowed to Out at dst (unaligned); lo <= hi must lie in Out.
/// On SSE2/AVX2 the clamp is done after a saturating pack to int16, where min/max is one
/// instruction (the result is the same: saturation is monotone and [lo, hi] fits in int16).
template <class Out, class A>
void store_clamped(Out* dst, batch<std::int32_t, A> v, int lo, int hi) noexcept {
  static_assert(std::is_same_v<Out, std::int8_t> || std::is_same_v<Out, std::uint8_t> ||
                    std::is_same_v<Out, std::int16_t>,
                "xquant: narrow outputs are int8_t, uint8_t or int16_t");
  detail::store_clamped<Out, A>(dst, v, lo, hi, A{});
}

/// True when Arch has a hardware fused multiply-add (AVX-512F, FMA3 with AVX2): the archs
/// fused_multiply_add exists for.
template <class A>
inline constexpr bool has_fused_multiply_add = detail::has_fused_multiply_add(A{});

/// x * y + z rounded once (vfmadd); only where has_fused_multiply_add<A>.
template <class A>
batch<float, A> fused_multiply_add(batch<float, A> x, batch<float, A> y, batch<float, A> z) noexcept {
  static_assert(has_fused_multiply_add<A>, "xquant: fused_multiply_add needs an arch with a hardware FMA");
  return detail::fused_multiply_add<A>(x, y, z, A{});
}

/// Stores the low byte of each int32 lane of v at dst (unaligned): truncation, not saturation.
template <class A>
void store_low_bytes(std::uint8_t* dst, batch<std::int32_t, A> v) noexcept {
  detail::store_low_bytes<A>(dst, v, A{});
}

/// Stores clamp(v[j], lo, hi) as uint8 at dst + j * batch size, j = 0..3 (64 contiguous
/// bytes on AVX-512); 0 <= lo <= hi <= 255.
template <class A>
void store_clamped_u8x4(std::uint8_t* dst, const batch<std::int32_t, A> (&v)[4], int lo, int hi) noexcept {
  detail::store_clamped_u8x4<A>(dst, v, lo, hi, A{});
}

}  // namespace xquant::simd
XQUANT_SIMD_END
