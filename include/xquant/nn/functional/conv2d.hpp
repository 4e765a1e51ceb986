#pragma once
// conv2d: 2-D convolution (cross-correlation, as PyTorch), NCHW, zero padding, groups.
//
//   x [N, C, H, W], w [O, C / groups, KH, KW], bias [O] or none
//   y [N, O, OH, OW],  OH = (H + 2 PH - KH) / SH + 1,  OW likewise
//   y[n][o][oh][ow] = bias[o] + sum_{c in group(o), kh, kw} w[o][c'][kh][kw] * x[n][c][oh*SH+kh-PH][ow*SW+kw-PW]
//
// Three algorithms:
//  - im2col + GEMM (kernels::gemm) per image and group, for forward, dW and dX (col2im).
//    A 1x1 / stride 1 / no padding convolution skips im2col: the image is its own matrix.
//  - padded-grid implicit im2col + GEMM for kernels larger than 1x1 (ResNet's and the
//    CNN's 3x3, stride 1 or 2): the image is zero-padded (split into stride phases) once and
//    the output is computed with a row pitch of OW + (KW - 1) / SW, which makes every row of
//    the im2col matrix a window of the padded image, read in place by
//    kernels::gemm_indexed (no im2col copy); dX is a GEMM per stride phase over windows of
//    the output gradient (no col2im). See detail/padded_grid.hpp. The price: (KW - 1) / SW
//    extra GEMM columns per output row.
//  - direct depthwise (groups == C == O, MobileNet's 3x3 s1/s2): no im2col, see
//    detail/depthwise.hpp.
//
// Threads and determinism: forward and dX are independent per image and run in parallel
// over the batch. dW is a sum over images: the batch is cut into piece_count(N) pieces (8
// for a batch of 8 or more, whatever the thread count), each piece sums its images into its
// own buffer, and the buffers are added in piece order, so results are bit-identical for
// any thread count; the depthwise dW is reduced the same way. The bias gradient is split
// over channels instead (each channel's sum is computed by one thread in image order). The
// per-image GEMMs run inside pool chunks, so kernels::gemm must not split them over the
// (non-reentrant) pool again; it keeps them on the calling thread. An input gradient that
// does not exist yet is written, not accumulated (autograd::input_grad_target).

#include <cstddef>
#include <type_traits>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/kernels/gemm.hpp"
#include "xquant/nn/functional/detail/common.hpp"
#include "xquant/nn/functional/detail/depthwise.hpp"
#include "xquant/nn/functional/detail/im2col.hpp"
#include "xquant/nn/functional/detail/padded_grid.hpp"
#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

enum class conv2d_algorithm {
  automatic,    ///< direct depthwise when groups == C == O, else the padded grid when it
                ///< pays (kernel > 1x1, few extra columns: use_padded_grid), else im2col + GEMM
  gemm,         ///< always im2col + GEMM (tests and benchmarks compare the paths)
  padded_grid,  ///< always padded-grid im2col + GEMM (any kernel, stride, padding, groups)
};

struct conv2d_options {
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;
  std::size_t groups = 1;
  conv2d_algorithm algorithm = conv2d_algorithm::automatic;
};

namespace detail {

template <class T>
conv_geometry conv2d_geometry(const basic_variable<T>& x, const basic_variable<T>& w, const basic_variable<T>* bias,
                              const conv2d_options& opt) {
  require_rank(x, 4, "conv2d: input [N, C, H, W]");
  require_rank(w, 4, "conv2d: weight [O, C / groups, KH, KW]");
  require_batch(x, "conv2d");
  check<value_error>(opt.stride_h > 0 && opt.stride_w > 0, "conv2d: strides must be positive, got ",
                     opt.stride_h, "x", opt.stride_w);
  check<value_error>(opt.groups > 0, "conv2d: groups must be positive");
  const auto& xs = x.value().shape();
  const auto& ws = w.value().shape();
  conv_geometry g{.n = xs[0], .c = xs[1], .h = xs[2], .w = xs[3], .o = ws[0], .kh = ws[2], .kw = ws[3],
                  .sh = opt.stride_h, .sw = opt.stride_w, .ph = opt.pad_h, .pw = opt.pad_w,
                  .groups = opt.groups};
  check<shape_error>(g.c > 0 && g.o > 0 && g.kh > 0 && g.kw > 0, "conv2d: empty input channels or weight (input ",
                     shape_string(x.shape()), ", weight ", shape_string(w.shape()), ")");
  check<shape_error>(g.c % g.groups == 0 && g.o % g.groups == 0, "conv2d: groups = ", g.groups,
                     " must divide the input channels (", g.c, ") and the output channels (", g.o, ")");
  check<shape_error>(ws[1] == g.cg(), "conv2d: the weight ", shape_string(w.shape()), " expects ", ws[1],
                     " input channels per group, but the input ", shape_string(x.shape()), " has ", g.c,
                     " channels in ", g.groups, " group(s), i.e. ", g.cg(), " per group");
  check<shape_error>(g.h + 2 * g.ph >= g.kh && g.w + 2 * g.pw >= g.kw, "conv2d: kernel ", g.kh, "x", g.kw,
                     " is larger than the padded input ", g.h + 2 * g.ph, "x", g.w + 2 * g.pw, " (input ", g.h,
                     "x", g.w, ", padding ", g.ph, "x", g.pw, ")");
  if (bias) {
    check<shape_error>(bias->value().dimension() == 1 && bias->size() == g.o, "conv2d: bias must have shape [",
                       g.o, "], got ", shape_string(bias->shape()));
  }
  g.oh = window_output(g.h, g.kh, g.sh, g.ph);
  g.ow = window_output(g.w, g.kw, g.sw, g.pw);
  return g;
}

/// y = conv(x) + bias for one image x [C, H, W] -> y [O, OH, OW] by im2col + GEMM.
template <class T>
void conv2d_gemm_forward_image(const T* x, const T* w, const T* bias, const conv_geometry& g, T* y) {
  const std::size_t p = g.out_plane(), og = g.og(), kg = g.kg();
  const T* col = x;
  if (!g.pointwise()) {
    T* buffer = scratch<T, 0>(g.col_rows() * p);
    im2col(x, g, buffer);
    col = buffer;
  }
  for (std::size_t grp = 0; grp < g.groups; ++grp) {
    kernels::gemm<T>(false, false, og, p, kg, T(1), w + grp * og * kg, kg, col + grp * kg * p, p, T(0),
                     y + grp * og * p, p);
  }
  if (bias) {
    for (std::size_t o = 0; o < g.o; ++o) {
      T* row = y + o * p;
      for (std::size_t i = 0; i < p; ++i) row[i] += bias[o];
    }
  }
}

/// Backward of one image by GEMM: dw (beta_w: 0 overwrites, 1 accumulates) and dx += ...
/// (dx = ... when dx_fresh: its buffer is uninitialised). dw or dx may be null when that
/// gradient is not wanted.
template <class T>
void conv2d_gemm_backward_image(const T* dy, const T* x, const T* w, const conv_geometry& g, T* dx, bool dx_fresh,
                                T* dw, T beta_w) {
  const std::size_t p = g.out_plane(), og = g.og(), kg = g.kg();
  if (dw) {
    const T* col = x;
    if (!g.pointwise()) {
      T* buffer = scratch<T, 0>(g.col_rows() * p);
      im2col(x, g, buffer);
      col = buffer;
    }
    for (std::size_t grp = 0; grp < g.groups; ++grp) {  // dW_g += dY_g * col_g^T
      kernels::gemm<T>(false, true, og, kg, p, T(1), dy + grp * og * p, p, col + grp * kg * p, p, beta_w,
                       dw + grp * og * kg, kg);
    }
  }
  if (dx) {
    const bool direct = g.pointwise();  // dX is then the GEMM's output itself
    T* dcol = direct ? dx : scratch<T, 1>(g.col_rows() * p);
    for (std::size_t grp = 0; grp < g.groups; ++grp) {  // dcol_g = W_g^T * dY_g
      kernels::gemm<T>(true, false, kg, p, og, T(1), w + grp * og * kg, kg, dy + grp * og * p, p,
                       direct && !dx_fresh ? T(1) : T(0), dcol + grp * kg * p, p);
    }
    if (direct) return;
    if (dx_fresh) std::fill_n(dx, g.c * g.in_plane(), T(0));
    col2im_add(dcol, g, dx);
  }
}

/// Whether `algo` runs g on the padded grid. automatic: a kernel larger than 1x1 (a 1x1
/// convolution's im2col is a plain copy or gather already) and at most ~30 % extra GEMM
/// columns (cols <= 1.3 OW: 3x3 pad 1 on 28x28, 14x14 and 7x7 (9 vs 7) at stride 1, and
/// 28x28 -> 14x14, 14x14 -> 7x7 at stride 2 qualify).
inline bool use_padded_grid(const conv_geometry& g, conv2d_algorithm algo) {
  if (algo != conv2d_algorithm::automatic) return algo == conv2d_algorithm::padded_grid;
  return g.kh * g.kw > 1 && 10 * phase_planes::of(g).cols <= 13 * g.ow;
}

/// y = conv(x) + bias over the batch on the padded grid (detail/padded_grid.hpp), images in
/// parallel.
template <class T>
void conv2d_grid_forward(const T* x, const T* w, const T* bias, const conv_geometry& g, T* y) {
  const phase_planes pg = phase_planes::of(g);
  const std::vector<std::size_t> rows = grid_row_offsets(g, pg);
  const std::size_t og = g.og(), kg = g.kg(), n = grid_columns(pg), group_planes = g.cg() * pg.size();
  const std::size_t in_image = g.c * g.in_plane(), out_image = g.o * g.out_plane(), p_image = g.c * pg.size();
  parallel_for(g.n, 1, [&](std::size_t begin, std::size_t end) {
    T* yg = scratch<T, 2>(g.o * n);
    for (std::size_t i = begin; i < end; ++i) {
      T* p = scratch<T, 0>(p_image);
      pad_image(x + i * in_image, g, pg, p);
      for (std::size_t grp = 0; grp < g.groups; ++grp) {  // Y'_g = W_g * col'_g, col' read in place
        kernels::gemm_indexed<T>(false, false, og, n, kg, T(1), w + grp * og * kg, kg, p + grp * group_planes,
                                 rows.data(), T(0), yg + grp * og * n, n);
      }
      crop_grid(yg, g, pg, bias, y + i * out_image);
    }
  });
}

/// image_backward(i, dw, beta_w) for every image, in parallel: the batch is cut into
/// piece_count pieces, each summing its images' dW into its own buffer (beta_w 0 for its
/// first image, then 1), and the buffers are added into dw in piece order. With one piece
/// dw itself is the buffer (beta_w 1). dw may be null (then beta_w is meaningless).
template <class T, class ImageBackward>
void for_each_image_summing_dw(const conv_geometry& g, T* dw, ImageBackward image_backward) {
  const std::size_t wsize = g.o * g.kg();
  const std::size_t pieces = piece_count(g.n);
  array<T> partial(shape_t{dw && pieces > 1 ? pieces * wsize : 0});  // caching allocator: no mmap per step
  parallel_for(pieces, 1, [&](std::size_t first_piece, std::size_t last_piece) {
    for (std::size_t piece = first_piece; piece < last_piece; ++piece) {
      T* dw_piece = !dw ? nullptr : pieces == 1 ? dw : partial.data() + piece * wsize;
      const std::size_t begin = piece_begin(g.n, pieces, piece), end = piece_begin(g.n, pieces, piece + 1);
      for (std::size_t i = begin; i < end; ++i) image_backward(i, dw_piece, pieces == 1 || i != begin ? T(1) : T(0));
    }
  });
  if (partial.size() == 0) return;
  parallel_for(wsize, 4096, [&](std::size_t begin, std::size_t end) {  // each element: pieces in order
    for (std::size_t piece = 0; piece < pieces; ++piece) {
      const T* part = partial.data() + piece * wsize;
      for (std::size_t i = begin; i < end; ++i) dw[i] += part[i];
    }
  });
}

/// dW and dX over the batch on the padded grid (see the top of padded_grid.hpp).
template <class T>
void conv2d_grid_backward(const T* dy, const T* x, const T* w, const conv_geometry& g, T* dx, bool dx_fresh, T* dw) {
  const phase_planes pg = phase_planes::of(g);
  const std::vector<std::size_t> rows = dw ? grid_row_offsets(g, pg) : std::vector<std::size_t>{};
  const std::vector<grid_phase<T>> phases = dx ? grid_phases(g, pg, w) : std::vector<grid_phase<T>>{};
  const std::size_t og = g.og(), cg = g.cg(), kg = g.kg(), n = grid_columns(pg), z = pg.max_offset();
  const std::size_t gs = spread_size(pg), group_planes = cg * pg.size();
  const std::size_t in_image = g.c * g.in_plane(), out_image = g.o * g.out_plane(), p_image = g.c * pg.size();
  for_each_image_summing_dw(g, dw, [&](std::size_t i, T* dw_piece, T beta_w) {
    T* gz = scratch<T, 0>(g.o * gs);
    spread_grid(dy + i * out_image, g, pg, gz);
    if (dw) {
      T* p = scratch<T, 2>(p_image);  // padded again (see the top of padded_grid.hpp)
      pad_image(x + i * in_image, g, pg, p);
      for (std::size_t grp = 0; grp < g.groups; ++grp) {  // dW_g += dY'_g * col'_g^T
        kernels::gemm_indexed<T>(false, true, og, kg, n, T(1), gz + grp * og * gs + z, gs, p + grp * group_planes,
                                 rows.data(), beta_w, dw_piece + grp * og * kg, kg);
      }
    }
    if (!dx) return;
    T* dp = scratch<T, 1>(p_image);
    for (const grid_phase<T>& ph : phases) {
      for (std::size_t grp = 0; grp < g.groups; ++grp) {  // dPP_ab,g = Wt_ab,g * Z_ab,g
        T* out = dp + grp * group_planes + ph.first;
        if (ph.depth == 0) {  // no tap reads this sub-plane (stride > kernel): zero gradient
          for (std::size_t c = 0; c < cg; ++c) std::fill_n(out + c * pg.size(), ph.columns, T(0));
          continue;
        }
        kernels::gemm_indexed<T>(false, false, cg, ph.columns, ph.depth, T(1), ph.weights.data() + grp * cg * ph.depth,
                                 ph.depth, gz + grp * og * gs, ph.rows.data(), T(0), out, pg.size());
      }
    }
    unpad_image(dp, g, pg, dx + i * in_image, dx_fresh);
  });
}

/// dW and dX over the batch by im2col + GEMM, images in parallel (for_each_image_summing_dw).
template <class T>
void conv2d_gemm_backward(const T* dy, const T* x, const T* w, const conv_geometry& g, T* dx, bool dx_fresh,
                          T* dw) {
  const std::size_t in_image = g.c * g.in_plane(), out_image = g.o * g.out_plane();
  for_each_image_summing_dw(g, dw, [&](std::size_t i, T* dw_piece, T beta_w) {
    conv2d_gemm_backward_image(dy + i * out_image, x + i * in_image, w, g, dx ? dx + i * in_image : nullptr, dx_fresh,
                               dw_piece, beta_w);
  });
}

template <class T>
void conv2d_depthwise_forward(const T* x, const T* w, const T* bias, const conv_geometry& g, T* y) {
  const std::size_t kk = g.kh * g.kw;
  const phase_planes pp = phase_planes::of(g);
  parallel_for(g.n * g.c, 1, [&](std::size_t begin, std::size_t end) {
    T* p = scratch<T, 0>(pp.size());
    T* out = scratch<T, 1>(pp.out_size());
    for (std::size_t plane = begin; plane < end; ++plane) {
      const std::size_t c = plane % g.c;
      pad_plane(x + plane * g.in_plane(), g, pp, p);
      depthwise_forward_plane(p, w + c * kk, bias ? bias[c] : T(0), g, pp, out, y + plane * g.out_plane());
    }
  });
}

/// Planes in memory order (the batch cut into pieces, one per thread). dW: each piece sums
/// its images into its own per-(channel, tap, lane) buffer; the buffers are added in piece
/// order at the end (deterministic for a given thread count).
template <class T>
void conv2d_depthwise_backward(const T* dy, const T* x, const T* w, const conv_geometry& g, T* dx, bool dx_fresh,
                               T* dw) {
  const std::size_t kk = g.kh * g.kw, per_piece = g.c * kk * dw_lanes;
  const phase_planes pp = phase_planes::of(g);
  const std::size_t z = pp.max_offset();
  const std::size_t pieces = piece_count(g.n);
  array<T> acc(shape_t{dw ? pieces * per_piece : 0}, T(0));
  parallel_for(pieces, 1, [&](std::size_t first_piece, std::size_t last_piece) {
    T* gz = scratch<T, 0>(pp.out_size() + 2 * z);
    T* p = dw ? scratch<T, 1>(pp.size()) : nullptr;
    T* dp = dx ? scratch<T, 2>(pp.size()) : nullptr;
    for (std::size_t piece = first_piece; piece < last_piece; ++piece) {
      const std::size_t begin = piece_begin(g.n, pieces, piece) * g.c, end = piece_begin(g.n, pieces, piece + 1) * g.c;
      for (std::size_t plane = begin; plane < end; ++plane) {
        const std::size_t c = plane % g.c;
        pad_output_grad(dy + plane * g.out_plane(), g, pp, gz);
        if (dp) {
          depthwise_input_grad_plane(gz, w + c * kk, g, pp, dp);
          if (dx_fresh) std::fill_n(dx + plane * g.in_plane(), g.in_plane(), T(0));
          unpad_plane_add(dp, g, pp, dx + plane * g.in_plane());
        }
        if (p) {
          pad_plane(x + plane * g.in_plane(), g, pp, p);
          depthwise_weight_grad_plane(gz + z, p, g, pp, acc.data() + piece * per_piece + c * kk * dw_lanes);
        }
      }
    }
  });
  if (!dw) return;
  for (std::size_t t = 0; t < g.c * kk; ++t) {
    double total = 0;
    for (std::size_t piece = 0; piece < pieces; ++piece) {
      total += sum(acc.data() + piece * per_piece + t * dw_lanes, dw_lanes);
    }
    dw[t] += static_cast<T>(total);
  }
}

/// db[o] += sum over images and positions of dy[n][o][.], split over channels.
template <class T>
void conv2d_bias_backward(const T* dy, const conv_geometry& g, T* db) {
  const std::size_t p = g.out_plane();
  parallel_for(g.o, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t o = begin; o < end; ++o) {
      double total = 0;
      for (std::size_t i = 0; i < g.n; ++i) total += sum(dy + (i * g.o + o) * p, p);
      db[o] += static_cast<T>(total);
    }
  });
}

}  // namespace detail

/// 2-D convolution; see the top of this file. Throws shape_error for a wrong rank, an
/// empty batch, a channel mismatch, groups not dividing the channels, a kernel larger
/// than the padded input or a bias of the wrong size.
template <class T>
basic_variable<T> conv2d(const basic_variable<T>& x, const basic_variable<T>& w,
                         const std::type_identity_t<basic_variable<T>>* bias = nullptr,
                         const conv2d_options& options = {}) {
  const detail::conv_geometry g = detail::conv2d_geometry(x, w, bias, options);
  const bool direct = options.algorithm == conv2d_algorithm::automatic && g.depthwise();
  const bool grid = !direct && detail::use_padded_grid(g, options.algorithm);
  array<T> y(shape_t{g.n, g.o, g.oh, g.ow});
  const T* b = bias ? bias->value().data() : nullptr;
  if (direct) {
    detail::conv2d_depthwise_forward(x.value().data(), w.value().data(), b, g, y.data());
  } else if (grid) {
    detail::conv2d_grid_forward(x.value().data(), w.value().data(), b, g, y.data());
  } else {
    const std::size_t in_image = g.c * g.in_plane(), out_image = g.o * g.out_plane();
    parallel_for(g.n, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) {
        detail::conv2d_gemm_forward_image(x.value().data() + i * in_image, w.value().data(), b, g,
                                          y.data() + i * out_image);
      }
    });
  }
  std::vector<basic_variable<T>> inputs{x, w};
  if (bias) inputs.push_back(*bias);
  return autograd::make_result<T>(std::move(y), std::move(inputs), [g, direct, grid](autograd::node<T>& n) {
    autograd::node<T>& xn = *n.inputs[0];
    autograd::node<T>& wn = *n.inputs[1];
    const T* dy = n.grad.data();
    if (n.inputs.size() > 2 && n.inputs[2]->requires_grad) {
      detail::conv2d_bias_backward(dy, g, autograd::input_grad(*n.inputs[2]).data());
    }
    const autograd::grad_target<T> gx =
        xn.requires_grad ? autograd::input_grad_target(xn) : autograd::grad_target<T>{nullptr, false};
    T* dx = gx.data;
    T* dw = wn.requires_grad ? autograd::input_grad(wn).data() : nullptr;
    if (!dx && !dw) return;
    if (direct) {
      detail::conv2d_depthwise_backward(dy, xn.value.data(), wn.value.data(), g, dx, gx.fresh, dw);
    } else if (grid) {
      detail::conv2d_grid_backward(dy, xn.value.data(), wn.value.data(), g, dx, gx.fresh, dw);
    } else {
      detail::conv2d_gemm_backward(dy, xn.value.data(), wn.value.data(), g, dx, gx.fresh, dw);
    }
  });
}

}  // namespace xquant::nn::functional
