#pragma once
// Packing: copies blocks of op(A) and op(B) into the contiguous, aligned panel layout the
// micro-kernel reads with unit stride, resolving the transposes on the way.
//
//   A panel (mr rows x kc): dst[p * mr + r] = op(A)[i0 + r][p0 + p]
//   B panel (kc x nr cols): dst[p * nr + c] = op(B)[p0 + p][j0 + c]
//
// Rows (columns) past the edge of the matrix are zero, so the micro-kernel always runs a
// full tile and edge tiles read nothing outside A or B. A block is a sequence of panels.
//
// Scratch memory: each thread that runs a GEMM owns one buffer for A blocks and one for B
// blocks (thread_local, 64-byte aligned). They only grow, to the largest block the thread
// has packed (at most mc x kc and kc x nc elements: ~0.5 MB each for float), and are
// freed when the thread exits, so a training loop calling gemm thousands of times
// allocates nothing after its first steps.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::gemm_detail {

/// One axis of a matrix view: index i sits at offset i * stride, or at offsets[i] when the
/// axis is indexed. An indexed axis lists where each line (row or column) of the matrix
/// starts, e.g. the shifted windows of one padded image that form an implicit im2col
/// matrix; the other axis of such a view has unit stride (every line is contiguous).
struct axis {
  std::size_t stride;
  const std::size_t* offsets = nullptr;
  std::size_t at(std::size_t i) const { return offsets ? offsets[i] : i * stride; }
  bool unit() const { return !offsets && stride == 1; }
};

/// A read-only matrix: element (i, j) at data[rows.at(i) + cols.at(j)].
template <class T>
struct view {
  const T* data;
  axis rows, cols;
};

/// op(X) of a row-major X with leading dimension ld, transposed or not.
template <class T>
view<T> op_view(const T* x, std::size_t ld, bool trans) {
  return trans ? view<T>{x, {1}, {ld}} : view<T>{x, {ld}, {1}};
}

/// op(X) of a matrix X whose row i is the run x + row_offsets[i] (row_offsets[i] = i * ld
/// is a plain row-major matrix), transposed or not.
template <class T>
view<T> op_view_indexed(const T* x, const std::size_t* row_offsets, bool trans) {
  return trans ? view<T>{x, {1}, {0, row_offsets}} : view<T>{x, {0, row_offsets}, {1}};
}

/// Line i of a block: a pointer to base + ax.at(first + i), where base already holds the
/// block's offset along the other (unit-stride) axis.
template <class T>
struct lines {
  const T* base;
  axis ax;
  std::size_t first;
  const T* operator[](std::size_t i) const { return base + ax.at(first + i); }
};

// ---- transposing blocks ------------------------------------------------------------------
// A panel whose source rows run along k (op(A) = A, op(B) = B^T) is a transpose. Scalar, it
// costs a load and a store per element with stores W elements apart (~0.3 ns / element
// here, as much as the arithmetic for the small conv GEMMs); x86 archs transpose square
// blocks in registers instead (4x4 / 2x2 on SSE, 8x8 / 4x4 on AVX and AVX-512: ~0.06 ns).

/// Side of the square blocks transpose_block handles for T on Arch (1: none, scalar).
template <class T>
constexpr std::size_t transpose_side(xsimd::generic) {
  return 1;
}
template <class T>
void transpose_block(const T* const*, T*, std::size_t, xsimd::generic) {}

#if XSIMD_WITH_SSE2
template <class T>
constexpr std::size_t transpose_side(xsimd::sse2) {
  return 16 / sizeof(T);
}
/// dst[q * ds + r] = src[r][q] for r, q < 4.
inline void transpose_block(const float* const* src, float* dst, std::size_t ds, xsimd::sse2) {
  __m128 r0 = _mm_loadu_ps(src[0]), r1 = _mm_loadu_ps(src[1]), r2 = _mm_loadu_ps(src[2]), r3 = _mm_loadu_ps(src[3]);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(dst, r0);
  _mm_storeu_ps(dst + ds, r1);
  _mm_storeu_ps(dst + 2 * ds, r2);
  _mm_storeu_ps(dst + 3 * ds, r3);
}
inline void transpose_block(const double* const* src, double* dst, std::size_t ds, xsimd::sse2) {
  const __m128d r0 = _mm_loadu_pd(src[0]), r1 = _mm_loadu_pd(src[1]);
  _mm_storeu_pd(dst, _mm_unpacklo_pd(r0, r1));
  _mm_storeu_pd(dst + ds, _mm_unpackhi_pd(r0, r1));
}
#endif

#if XSIMD_WITH_AVX
template <class T>
constexpr std::size_t transpose_side(xsimd::avx) {
  return 32 / sizeof(T);
}
/// dst[q * ds + r] = src[r][q] for r, q < 8.
inline void transpose_block(const float* const* src, float* dst, std::size_t ds, xsimd::avx) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (std::size_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src[i]);
#pragma GCC unroll 4
  for (std::size_t i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);  // rows i, i+1 interleaved, per 128-bit lane
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (std::size_t i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);  // 4x4 blocks, per lane
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (std::size_t i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
/// dst[q * ds + r] = src[r][q] for r, q < 4.
inline void transpose_block(const double* const* src, double* dst, std::size_t ds, xsimd::avx) {
  __m256d r[4], t[4];
#pragma GCC unroll 4
  for (std::size_t i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(src[i]);
  t[0] = _mm256_unpacklo_pd(r[0], r[1]);
  t[1] = _mm256_unpackhi_pd(r[0], r[1]);
  t[2] = _mm256_unpacklo_pd(r[2], r[3]);
  t[3] = _mm256_unpackhi_pd(r[2], r[3]);
#pragma GCC unroll 2
  for (std::size_t i = 0; i < 2; ++i) {
    _mm256_storeu_pd(dst + i * ds, _mm256_permute2f128_pd(t[i], t[i + 2], 0x20));
    _mm256_storeu_pd(dst + (i + 2) * ds, _mm256_permute2f128_pd(t[i], t[i + 2], 0x31));
  }
}
#endif

#if XSIMD_WITH_AVX512F  // the AVX blocks (AVX-512 implies AVX); wider ones gain little here
template <class T>
constexpr std::size_t transpose_side(xsimd::avx512f) {
  return 32 / sizeof(T);
}
template <class T>
void transpose_block(const T* const* src, T* dst, std::size_t ds, xsimd::avx512f) {
  transpose_block(src, dst, ds, xsimd::avx{});
}
#endif

// ---- panels --------------------------------------------------------------------------------

/// Copies `rows` (<= W) source rows of `len` elements, each contiguous along k (element
/// (r, p) at src[r][p]), into one panel: dst[p * W + r], rows rows..W-1 zero.
template <class Arch, std::size_t W, class T>
void pack_transposed(lines<T> src, std::size_t rows, std::size_t len, T* dst) {
  if (rows < W) std::fill_n(dst, len * W, T(0));
  constexpr std::size_t s = transpose_side<T>(Arch{});
  const std::size_t block_rows = s > 1 ? rows / s * s : 0, block_len = s > 1 ? len / s * s : 0;
  // s rows at a time, along k: only s source lines are live (each is finished before the
  // next is touched), whatever the row stride.
  for (std::size_t r = 0; r < block_rows; r += s) {
    const T* row[s > 1 ? s : 1];
    for (std::size_t i = 0; i < s; ++i) row[i] = src[r + i];
    for (std::size_t p = 0; p < block_len; p += s) {
      transpose_block(row, dst + p * W + r, W, Arch{});
      for (std::size_t i = 0; i < s; ++i) row[i] += s;
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {  // what the blocks did not cover
    const T* row = src[r];
    for (std::size_t p = r < block_rows ? block_len : 0; p < len; ++p) dst[p * W + r] = row[p];
  }
}

/// Copies `rows` source rows of `len` elements each, where the rows of one k step are
/// contiguous (element (r, p) at src[p][r]), into ceil(rows / W) panels of W x len.
/// Blocks of 16 k steps, panel by panel: a block's source lines stay in L1 for all the
/// panels that share them, and each panel is written 16 steps at a time (panels lie
/// W * len elements apart, often a power of two: writing all panels step by step would
/// hit the same L1 set over and over).
template <std::size_t W, class T>
void pack_contiguous(lines<T> src, std::size_t rows, std::size_t len, T* dst) {
  constexpr std::size_t steps = 16;
  for (std::size_t p0 = 0; p0 < len; p0 += steps) {
    const std::size_t p1 = std::min(len, p0 + steps);
    for (std::size_t r = 0; r < rows; r += W) {
      const std::size_t n = std::min(W, rows - r);
      T* out = dst + r * len;
      for (std::size_t p = p0; p < p1; ++p) {
        const T* line = src[p] + r;
        if (n == W) {
          std::memcpy(out + p * W, line, W * sizeof(T));
        } else {
          std::copy_n(line, n, out + p * W);
          std::fill_n(out + p * W + n, W - n, T(0));
        }
      }
    }
  }
}

/// Packs rows [r0, r0 + rows) x k steps [p0, p0 + len) of x (element (r, p) at
/// x.data[r_axis.at(r) + p_axis.at(p)], one of the two axes unit-stride) into
/// ceil(rows / W) panels of W x len.
template <class Arch, std::size_t W, class T>
void pack(const T* data, axis r_axis, std::size_t r0, axis p_axis, std::size_t p0, std::size_t rows, std::size_t len,
          T* dst) {
  if (r_axis.unit()) return pack_contiguous<W>(lines<T>{data + r0, p_axis, p0}, rows, len, dst);
  for (std::size_t r = 0; r < rows; r += W, dst += W * len)
    pack_transposed<Arch, W>(lines<T>{data + p0, r_axis, r0 + r}, std::min(W, rows - r), len, dst);
}

/// Packs op(A)[i0 .. i0+mc)[p0 .. p0+kc) as ceil(mc / MR) panels of MR x kc.
template <class Arch, std::size_t MR, class T>
void pack_a(const view<T>& a, std::size_t i0, std::size_t mc, std::size_t p0, std::size_t kc, T* dst) {
  pack<Arch, MR>(a.data, a.rows, i0, a.cols, p0, mc, kc, dst);
}

/// Packs op(B)[p0 .. p0+kc)[j0 .. j0+nc) as ceil(nc / NR) panels of kc x NR: the panels
/// of op(B)^T, whose rows are the columns of op(B).
template <class Arch, std::size_t NR, class T>
void pack_b(const view<T>& b, std::size_t p0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) {
  pack<Arch, NR>(b.data, b.cols, j0, b.rows, p0, nc, kc, dst);
}

/// A per-thread, grow-only, 64-byte aligned buffer of at least n elements (see the top of
/// this file). Slot tells buffers apart (0: A blocks, 1: B blocks, 2: B row pointers).
template <class T, int Slot>
T* scratch(std::size_t n) {
  struct aligned_delete {
    void operator()(T* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  struct buffer {
    std::unique_ptr<T, aligned_delete> data;
    std::size_t capacity = 0;
  };
  thread_local buffer b;
  if (b.capacity < n) {
    b.data.reset();
    b.data.reset(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})));
    b.capacity = n;
  }
  return b.data.get();
}

}  // namespace xquant::kernels::gemm_detail
XQUANT_SIMD_END
