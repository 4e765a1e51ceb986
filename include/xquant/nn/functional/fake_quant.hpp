#pragma once
// Fake quantization: the one differentiable op of quantization-aware training that knows
// about quantization. Forward = quantize then dequantize with the scheme's range,
// granularity and rounding; backward = a gradient estimator, because the true derivative
// of a staircase is zero almost everywhere.
//
// ---- fake_quant<Scheme>(x, params): fixed parameters -----------------------------------
//
//   forward   y = (clamp(round(x / s) + z, qmin, qmax) - z) * s,   per tensor or per axis
//   T = float:  exactly quant/quantize.hpp's fake_quantize (ONNX QuantizeLinear then
//               DequantizeLinear), bit for bit. With round half to even (every default
//               scheme) one SIMD pass (kernels/fake_quant.hpp, whose reference is that
//               composition) computes y and, when a gradient will be needed, the mask below
//               as one bit per element, so the backward neither re-reads x nor divides;
//               other roundings call quantize_value/dequantize_value per element.
//   T = double: the same operations in double, with the float scale widened exactly. Used by
//               the float64 gradient checks; it can differ from the float result where the
//               float division x / s rounds across a rounding boundary.
//   NaN in x is a numeric_error (it has no quantized value); +-Inf saturates to qmin/qmax.
//
//   backward, chosen by Scheme::estimator:
//     ste          dx = dy everywhere                          (Bengio et al. 2013)
//     clipped_ste  dx = dy where the clamp did not act, else 0 (PyTorch FakeQuantize)
//     lsq          as clipped_ste: with fixed parameters there is no step size to learn;
//                  fake_quant_lsq below is the learned version.
//
//   "The clamp did not act" is decided on the *rounded* integer, before clamping:
//       inside  <=>  qmin <= round(x / s) + z <= qmax,
//   which is PyTorch's mask (fake_quantize_per_{tensor,channel}_affine_cachemask). It lets
//   the gradient through for values up to half a step beyond the representable real range
//   [(qmin - z) s, (qmax - z) s], namely those that round onto the end levels; exactly
//   those are quantized without clamping error. Every estimator in this file uses this one
//   mask, so switching clipped_ste <-> lsq never changes the input gradient.
//
// ---- fake_quant_lsq<Scheme>(x, scale, options): learned step size -----------------------
//
// LSQ (Esser et al. 2019, "Learned Step Size Quantization"). The step size s is a
// variable (shape [1] per tensor, [C] per axis); the zero point z is fixed (0 for
// symmetric schemes and, as in the paper, for unsigned activations; options.zero_point
// otherwise). With Q_N = z - qmin and Q_P = qmax - z (the paper's numbers of negative and
// positive levels):
//
//   forward (eqs. 1-2)   v_bar = round(clip(v / s, -Q_N, Q_P)),   v_hat = v_bar * s
//                        (for T = float: fake_quant with scale s, bit for bit)
//   backward (eq. 3)     d v_hat / d v = 1 inside, 0 outside            (clipped STE)
//                        d v_hat / d s = -v / s + round(v / s)   inside
//                                      = -Q_N                    if round(v / s) < -Q_N
//                                      = Q_P                     if round(v / s) >  Q_P
//   gradient scale (§2.2) dL/ds is multiplied by g = 1 / sqrt(N * Q_P)
//
// "inside" is the rounded mask above; the paper writes -Q_N < v / s < Q_P on the unrounded
// quotient. The two differ only within half a step beyond either end, where we give
// round(v/s) - v/s (in (-1/2, 1/2]) instead of -Q_N or Q_P; PyTorch's
// _fake_quantize_learnable_per_{tensor,channel}_affine does the same. Inside, the formula
// is (v_hat - v) / s: the true derivative of v_hat = round(v/s) s with the STE for round.
//
// N, the number of values one step size serves (options.count):
//   lsq_count::per_scale   all elements of x sharing the scale: the whole tensor per
//                          tensor, one channel per axis. The paper's N_W for weights.
//   lsq_count::per_sample  the same divided by the batch (axis 0): the number of features
//                          of one sample, the paper's N_F for activations. Not allowed
//                          for per_axis<0> (axis 0 is then the batch).
// Q_P is qmax - z, or z - qmin when that is 0 (a range with no positive level);
// options.grad_scale > 0 replaces g altogether.
//
// The forward uses max(s, learned_min_scale) so that a step size pushed to zero or below
// by an optimizer step cannot divide by zero or flip signs. The floor is straight-through:
// the gradient computed at the floored value is passed to s unchanged, so s can recover
// (the nn:: modules also clamp the parameter itself in place, as PyTorch's
// _LearnableFakeQuantize does). A NaN or infinite step size is a numeric_error.
// lsq_initial_scale gives the paper's initial step size 2 mean(|v|) / sqrt(Q_P).
//
// ---- fake_quant_pact<Scheme>(x, alpha): learned clipping -------------------------------
//
// PACT (Choi et al. 2018, "PACT: Parameterized Clipping Activation", §2) for unsigned
// activations, zero point 0, scale alpha / qmax (qmax = 2^k - 1 for unsigned_bits<k>):
//
//   forward   y = clamp(x, 0, alpha);   y_q = round(y * qmax / alpha) * alpha / qmax
//             (computed as fake_quant of y with scale alpha / qmax, so for T = float it
//             equals fake_quantize with that scale bit for bit)
//   backward  d y_q / d x     = 1 for 0 <= x < alpha, else 0   (STE inside the clip)
//             d y_q / d alpha = 1 for x >= alpha, else 0         (the paper's eq. 3)
//
// The alpha gradient is PACT's, not the full derivative: for 0 <= x < alpha the forward
// also moves with alpha (through the scale), which PACT deliberately ignores (LSQ does
// not; use fake_quant_lsq for that). The input mask is alpha itself, not the rounded
// mask above: that is PACT's definition. alpha is floored at qmax * learned_min_scale,
// straight-through, like the LSQ step size.
//
// Scalar types: float (training) and double (gradient checks). Gradients of the
// parameters are summed in double over fixed chunks, so they are bit-identical whatever
// the thread count.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/allocator.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/kernels/fake_quant.hpp"
#include "xquant/nn/functional/detail/fake_quant.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/scheme.hpp"
#include "xquant/quant/tags.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

// ======================================================================================
// fake_quant: fixed parameters
// ======================================================================================

namespace detail {

/// Whether fake quantization of T with Scheme runs the SIMD kernels (kernels/fake_quant.hpp):
/// float with round half to even. Other cases take the element-by-element path below.
template <quant_scheme Scheme, class T>
inline constexpr bool simd_fake_quant =
    std::is_same_v<T, float> && std::is_same_v<typename Scheme::rounding, round_half_even>;

/// Split points of the SIMD path: multiples of this many elements (a multiple of 8), so no
/// two threads ever write the same byte of the bit mask.
inline constexpr std::size_t mask_chunk = std::size_t{1} << 15;

/// fn(channel, begin, end) over all of `l`, on several threads in chunks of mask_chunk
/// elements when large.
template <class Fn>
void parallel_mask_runs(const axis_layout& l, Fn fn) {
  const std::size_t n = l.size();
  const std::size_t chunks = (n + mask_chunk - 1) / mask_chunk;
  if (chunks < 2 || num_threads() == 1) {
    for_each_run(l, 0, n, fn);
    return;
  }
  parallel_for(chunks, 1, [&](std::size_t first, std::size_t last) {
    for_each_run(l, first * mask_chunk, std::min(n, last * mask_chunk), fn);
  });
}

/// The kernel arguments of channel c.
template <quant_scheme Scheme>
kernels::fake_quant_args kernel_args(float scale, std::int32_t zero_point) {
  kernels::fake_quant_args a;
  a.scale = scale;
  a.lo = static_cast<float>(Scheme::qmin - zero_point);
  a.hi = static_cast<float>(Scheme::qmax - zero_point);
  return a;
}

using mask_bits = std::vector<std::uint8_t, caching_allocator<std::uint8_t>>;

/// fake_quant for float, round half to even: one SIMD pass computes y and, when a gradient
/// will be needed, the clipped-STE mask as bits, so the backward reads 1 bit per element
/// instead of x (and divides nothing).
template <quant_scheme Scheme>
basic_variable<float> fake_quant_simd(const basic_variable<float>& x, const quant_params& p, const axis_layout& l) {
  using estimator = typename Scheme::estimator;
  const bool need_mask = !std::is_same_v<estimator, ste> && autograd::grad_enabled() && x.requires_grad();
  mask_bits mask(need_mask ? kernels::mask_bytes(l.size()) : 0, 0);
  array<float> y(x.value().shape());
  const float* px = x.value().data();
  float* py = y.data();
  std::uint8_t* pm = need_mask ? mask.data() : nullptr;
  nan_flag nan;
  parallel_mask_runs(l, [&](std::size_t c, std::size_t b, std::size_t e) {
    const kernels::fake_quant_args a = kernel_args<Scheme>(p.scale[c], p.zero_point[c]);
    if (kernels::fake_quant(px + b, e - b, a, py + b, pm, b)) nan.set();
  });
  if (nan.seen()) throw_first_nan(x.value(), "fake_quant");

  // A new gradient buffer (the usual case) is written, not zeroed and added to: 0.0f + dy
  // is what adding to zeros gives, bit for bit.
  if constexpr (std::is_same_v<estimator, ste>) {
    return autograd::make_result<float>(std::move(y), {x}, [l](autograd::node<float>& n) {
      const autograd::grad_target<float> dx = autograd::input_grad_target(*n.inputs[0]);
      const float* dy = n.grad.data();
      parallel_mask_runs(l, [&](std::size_t, std::size_t b, std::size_t e) {
        if (dx.fresh) {
          for (std::size_t i = b; i < e; ++i) dx.data[i] = 0.0f + dy[i];
        } else {
          for (std::size_t i = b; i < e; ++i) dx.data[i] += dy[i];
        }
      });
    });
  } else {
    return autograd::make_result<float>(std::move(y), {x}, [l, mask = std::move(mask)](autograd::node<float>& n) {
      const autograd::grad_target<float> dx = autograd::input_grad_target(*n.inputs[0]);
      const float* dy = n.grad.data();
      parallel_mask_runs(l, [&](std::size_t, std::size_t b, std::size_t e) {
        if (dx.fresh) {
          kernels::masked_copy(dy + b, e - b, mask.data(), b, dx.data + b);
        } else {
          kernels::masked_add(dy + b, e - b, mask.data(), b, dx.data + b);
        }
      });
    });
  }
}

}  // namespace detail

/// Fake quantization with fixed parameters `p` (validated for Scheme and x's shape);
/// backward by Scheme::estimator. See the top of this file.
template <quant_scheme Scheme, class T>
basic_variable<T> fake_quant(const basic_variable<T>& x, const quant_params& p) {
  static_assert(detail::is_fake_quant_scalar<T>, "xquant: fake_quant runs in float or double");
  using estimator = typename Scheme::estimator;
  static_assert(std::is_same_v<estimator, ste> || std::is_same_v<estimator, clipped_ste> ||
                    std::is_same_v<estimator, lsq>,
                "xquant: unknown gradient estimator");
  validate<Scheme>(p);
  validate_shape(p, x.shape());  // per axis: one scale per index of the axis
  const axis_layout l = detail::scheme_layout<Scheme>(x.shape(), "fake_quant");
  if constexpr (detail::simd_fake_quant<Scheme, T>) {
    return detail::fake_quant_simd<Scheme>(x, p, l);
  } else {
    const std::vector<float> scale = p.scale;
    const std::vector<std::int32_t> zero_point = p.zero_point;

    array<T> y(x.value().shape());
    const T* px = x.value().data();
    T* py = y.data();
    detail::nan_flag nan;
    detail::parallel_runs(l, [&](std::size_t c, std::size_t b, std::size_t e) {
      const T s = static_cast<T>(scale[c]);
      const std::int32_t z = zero_point[c];
      for (std::size_t i = b; i < e; ++i) {
        if (std::isnan(px[i])) {
          nan.set();
          continue;
        }
        py[i] = detail::fake_quant_element<Scheme>(px[i], s, z);
      }
    });
    if (nan.seen()) detail::throw_first_nan(x.value(), "fake_quant");

    if constexpr (std::is_same_v<estimator, ste>) {
      // STE: the rounding and the clamp are both treated as the identity.
      return autograd::make_result<T>(std::move(y), {x}, [l](autograd::node<T>& n) {
        T* dx = autograd::input_grad(*n.inputs[0]).data();
        const T* dy = n.grad.data();
        detail::parallel_runs(l, [dx, dy](std::size_t, std::size_t b, std::size_t e) {
          for (std::size_t i = b; i < e; ++i) dx[i] += dy[i];
        });
      });
    } else {
      // Clipped STE (and LSQ's input gradient): dy passes where the clamp did not act.
      return autograd::make_result<T>(std::move(y), {x}, [l, scale, zero_point](autograd::node<T>& n) {
        const T* in = n.inputs[0]->value.data();
        const T* dy = n.grad.data();
        T* dx = autograd::input_grad(*n.inputs[0]).data();
        detail::parallel_runs(l, [&](std::size_t c, std::size_t b, std::size_t e) {
          const T s = static_cast<T>(scale[c]);
          const detail::relative_bounds<Scheme, T> bounds(zero_point[c]);
          for (std::size_t i = b; i < e; ++i) {
            if (bounds.inside(detail::rounded_quotient<Scheme>(in[i], s))) dx[i] += dy[i];
          }
        });
      });
    }
  }
}

// ======================================================================================
// LSQ: learned step size
// ======================================================================================

/// The smallest step size (and PACT alpha / qmax) the learned quantizers use: float
/// epsilon, PyTorch _LearnableFakeQuantize's floor. Far below any useful step size, far
/// above the subnormals.
inline constexpr float learned_min_scale = std::numeric_limits<float>::epsilon();

/// What N in the LSQ gradient scale 1 / sqrt(N * Q_P) counts (see the top of this file).
enum class lsq_count {
  per_scale,   ///< elements sharing one step size: weights (the paper's N_W)
  per_sample,  ///< the same per sample of the batch (axis 0): activations (N_F)
};

struct lsq_options {
  /// Fixed zero points: empty = 0 for every channel, else one per channel (per_tensor: 1).
  std::vector<std::int32_t> zero_point = {};
  lsq_count count = lsq_count::per_scale;
  /// > 0: use this gradient scale instead of 1 / sqrt(N * Q_P); 0: the paper's.
  double grad_scale = 0;
};

/// Q_P, the number of positive levels relative to zero point z: qmax - z, or z - qmin when
/// the range has no level above z.
template <quant_scheme Scheme>
constexpr int lsq_positive_levels(std::int32_t z = 0) {
  return Scheme::qmax - z > 0 ? Scheme::qmax - z : z - Scheme::qmin;
}

/// The paper's gradient scale g = 1 / sqrt(N * Q_P).
inline double lsq_gradient_scale(std::size_t n, int positive_levels) {
  check(n > 0 && positive_levels > 0, "lsq_gradient_scale: N and Q_P must be positive, got ", n, " and ",
        positive_levels);
  return 1.0 / std::sqrt(static_cast<double>(n) * static_cast<double>(positive_levels));
}

namespace detail {

/// The zero point of each of `channels` channels, validated for Scheme.
template <quant_scheme Scheme>
std::vector<std::int32_t> lsq_zero_points(const std::vector<std::int32_t>& given, std::size_t channels) {
  if (given.empty()) return std::vector<std::int32_t>(channels, 0);
  check<shape_error>(given.size() == channels, "fake_quant_lsq: ", given.size(), " zero points for ", channels,
                     " channels");
  for (std::size_t c = 0; c < channels; ++c) {
    const std::int32_t z = given[c];
    check(z >= Scheme::qmin && z <= Scheme::qmax, "fake_quant_lsq: zero_point[", c, "] = ", z, " is outside [",
          Scheme::qmin, ", ", Scheme::qmax, "]");
    check(!Scheme::is_symmetric || z == 0, "fake_quant_lsq: a symmetric scheme needs zero point 0, got zero_point[",
          c, "] = ", z);
  }
  return given;
}

/// N of the gradient scale for x (see lsq_count).
template <quant_scheme Scheme>
std::size_t lsq_count_of(const shape_t& shape, const axis_layout& l, lsq_count count) {
  std::size_t n = l.channels > 0 ? l.size() / l.channels : 0;
  if (count == lsq_count::per_sample) {
    check<value_error>(!(Scheme::is_per_axis && Scheme::axis == 0),
                       "fake_quant_lsq: lsq_count::per_sample divides by the batch (axis 0), but the scheme is "
                       "per_axis<0>; use lsq_count::per_scale");
    check<shape_error>(!shape.empty() && shape[0] > 0, "fake_quant_lsq: lsq_count::per_sample needs a batch axis, "
                       "got shape ", shape_string(shape));
    n /= shape[0];
  }
  return std::max<std::size_t>(n, 1);
}

/// round(u) with the scheme's rounding where it matters for LSQ's backward: exact for u
/// whose rounding lies in [lo - 1, hi + 1], else some value outside [lo, hi] on the same
/// side. For float with round half to even that is the magic-number rounding of
/// kernels/fake_quant.hpp after clamping u to [lo - 1, hi + 1] (no libm nearbyint call,
/// which without SSE4.1 is a function call per element).
template <quant_scheme Scheme, class T>
T lsq_round(T u, const relative_bounds<Scheme, T>& bounds) {
  if constexpr (simd_fake_quant<Scheme, T>) {
    constexpr float magic = 12582912.0f;  // 1.5 * 2^23
    const float v = std::min(std::max(u, bounds.lo - 1.0f), bounds.hi + 1.0f);
    return (v + magic) - magic;
  } else {
    return round_to_integral<typename Scheme::rounding>(u);
  }
}

/// g for each channel (Q_P depends on the channel's zero point).
template <quant_scheme Scheme>
std::vector<double> lsq_grad_scales(const std::vector<std::int32_t>& zero_point, std::size_t n, double given) {
  check(std::isfinite(given) && given >= 0, "fake_quant_lsq: grad_scale must be finite and >= 0 (0: the paper's), "
        "got ", given);
  std::vector<double> g(zero_point.size());
  for (std::size_t c = 0; c < g.size(); ++c)
    g[c] = given > 0 ? given : lsq_gradient_scale(n, lsq_positive_levels<Scheme>(zero_point[c]));
  return g;
}

}  // namespace detail

/// LSQ fake quantization with the learned step size `scale`; see the top of this file.
template <quant_scheme Scheme, class T>
basic_variable<T> fake_quant_lsq(const basic_variable<T>& x, const basic_variable<T>& scale,
                                 const lsq_options& options = {}) {
  static_assert(detail::is_fake_quant_scalar<T>, "xquant: fake_quant_lsq runs in float or double");
  static_assert(std::is_same_v<typename Scheme::estimator, lsq>,
                "xquant: fake_quant_lsq is the lsq estimator; give the scheme the lsq tag "
                "(e.g. scheme<narrow_bits<8>, symmetric, per_axis<0>, lsq>)");
  const char* op = "fake_quant_lsq";
  const axis_layout l = detail::scheme_layout<Scheme>(x.shape(), op);
  const std::vector<T> s = detail::learned_values(scale, l.channels, static_cast<T>(learned_min_scale), op, "scale");
  const std::vector<std::int32_t> z = detail::lsq_zero_points<Scheme>(options.zero_point, l.channels);
  const std::vector<double> g =
      detail::lsq_grad_scales<Scheme>(z, detail::lsq_count_of<Scheme>(x.shape(), l, options.count), options.grad_scale);

  array<T> y(x.value().shape());
  const T* px = x.value().data();
  T* py = y.data();
  detail::nan_flag nan;
  detail::parallel_runs(l, [&](std::size_t c, std::size_t b, std::size_t e) {
    if constexpr (detail::simd_fake_quant<Scheme, T>) {  // the same values, SIMD
      if (kernels::fake_quant(px + b, e - b, detail::kernel_args<Scheme>(s[c], z[c]), py + b)) nan.set();
    } else {
      for (std::size_t i = b; i < e; ++i) {
        if (std::isnan(px[i])) {
          nan.set();
          continue;
        }
        py[i] = detail::fake_quant_element<Scheme>(px[i], s[c], z[c]);  // eqs. 1-2
      }
    }
  });
  if (nan.seen()) detail::throw_first_nan(x.value(), op);

  return autograd::make_result<T>(std::move(y), {x, scale}, [l, s, z, g](autograd::node<T>& n) {
    autograd::node<T>& xn = *n.inputs[0];
    autograd::node<T>& sn = *n.inputs[1];
    const T* in = xn.value.data();
    const T* dy = n.grad.data();
    T* dx = xn.requires_grad ? autograd::input_grad(xn).data() : nullptr;
    // One pass: the input gradient (clipped STE) and sum(dy * d v_hat / d s) per channel (eq. 3).
    // Four partial sums (element i of a run into part[(i - b) % 4]) break the chain of
    // dependent double adds; the order is fixed, so the result still does not depend on
    // the threads.
    auto per_run = [&](std::size_t c, std::size_t b, std::size_t e, double& acc) {
      const detail::relative_bounds<Scheme, T> bounds(z[c]);  // [-Q_N, Q_P]
      double part[4] = {0, 0, 0, 0};
      for (std::size_t i = b; i < e; ++i) {
        const T u = in[i] / s[c];
        const T r = detail::lsq_round<Scheme>(u, bounds);
        double d;
        if (bounds.inside(r)) {
          if (dx) dx[i] += dy[i];
          d = static_cast<double>(r) - static_cast<double>(u);  // -v/s + round(v/s)
        } else {
          d = static_cast<double>(r < bounds.lo ? bounds.lo : bounds.hi);  // -Q_N | Q_P
        }
        part[(i - b) % 4] += static_cast<double>(dy[i]) * d;
      }
      acc += (part[0] + part[1]) + (part[2] + part[3]);
    };
    const std::vector<double> ds = detail::channel_sums(l, per_run);
    if (!sn.requires_grad) return;
    T* dscale = autograd::input_grad(sn).data();
    for (std::size_t c = 0; c < ds.size(); ++c) dscale[c] += static_cast<T>(g[c] * ds[c]);  // times g (§2.2)
  });
}

/// The paper's initial step size per channel of Scheme: 2 mean(|x|) / sqrt(Q_P), with Q_P
/// for zero point `zero_point`; shape [channels]. A channel of zeros gets 1 (any step
/// size represents it exactly), a result below learned_min_scale gets that floor.
template <quant_scheme Scheme, class T>
array<T> lsq_initial_scale(const array<T>& x, std::int32_t zero_point = 0) {
  check(x.size() > 0, "lsq_initial_scale: the tensor is empty (shape ", shape_string(shape_of(x)), ")");
  const axis_layout l = detail::scheme_layout<Scheme>(shape_of(x), "lsq_initial_scale");
  const T* p = x.data();
  auto abs_sum = [p](std::size_t, std::size_t b, std::size_t e, double& acc) {
    for (std::size_t i = b; i < e; ++i) acc += std::abs(static_cast<double>(p[i]));
  };
  const std::vector<double> sum_abs = detail::channel_sums(l, abs_sum);
  const double per_channel = static_cast<double>(l.size() / l.channels);
  const double root_qp = std::sqrt(static_cast<double>(lsq_positive_levels<Scheme>(zero_point)));
  array<T> out(shape_t{l.channels});
  for (std::size_t c = 0; c < l.channels; ++c) {
    check<numeric_error>(std::isfinite(sum_abs[c]), "lsq_initial_scale: channel ", c, " contains NaN or Inf");
    const double s = 2.0 * (sum_abs[c] / per_channel) / root_qp;
    out.data()[c] = s == 0.0 ? T(1) : std::max(static_cast<T>(s), static_cast<T>(learned_min_scale));
  }
  return out;
}

// ======================================================================================
// PACT: learned clipping for unsigned activations
// ======================================================================================

/// PACT fake quantization with the learned clipping level `alpha`; see the top of this file.
template <quant_scheme Scheme, class T>
basic_variable<T> fake_quant_pact(const basic_variable<T>& x, const basic_variable<T>& alpha) {
  static_assert(detail::is_fake_quant_scalar<T>, "xquant: fake_quant_pact runs in float or double");
  static_assert(Scheme::qmin == 0,
                "xquant: PACT clips activations to [0, alpha] with zero point 0; use an unsigned range "
                "(unsigned_bits<B>)");
  static_assert(!Scheme::power_of_two,
                "xquant: PACT's scale alpha / qmax is learned and not a power of two; use float_scale");
  static_assert(std::is_same_v<typename Scheme::estimator, clipped_ste>,
                "xquant: PACT's input gradient is the clipped STE; use clipped_ste (the default estimator)");
  const char* op = "fake_quant_pact";
  const axis_layout l = detail::scheme_layout<Scheme>(x.shape(), op);
  constexpr T qmax = static_cast<T>(Scheme::qmax);
  const std::vector<T> a =
      detail::learned_values(alpha, l.channels, qmax * static_cast<T>(learned_min_scale), op, "alpha");

  array<T> y(x.value().shape());
  const T* px = x.value().data();
  T* py = y.data();
  detail::nan_flag nan;
  detail::parallel_runs(l, [&](std::size_t c, std::size_t b, std::size_t e) {
    const T s = a[c] / qmax;
    for (std::size_t i = b; i < e; ++i) {
      const T v = px[i];
      if (std::isnan(v)) {
        nan.set();
        continue;
      }
      const T clipped = v < T(0) ? T(0) : (v >= a[c] ? a[c] : v);  // eq. 1
      py[i] = detail::fake_quant_element<Scheme>(clipped, s, 0);    // eq. 2
    }
  });
  if (nan.seen()) detail::throw_first_nan(x.value(), op);

  return autograd::make_result<T>(std::move(y), {x, alpha}, [l, a](autograd::node<T>& n) {
    autograd::node<T>& xn = *n.inputs[0];
    autograd::node<T>& an = *n.inputs[1];
    const T* in = xn.value.data();
    const T* dy = n.grad.data();
    T* dx = xn.requires_grad ? autograd::input_grad(xn).data() : nullptr;
    auto per_run = [&](std::size_t c, std::size_t b, std::size_t e, double& acc) {
      for (std::size_t i = b; i < e; ++i) {
        if (in[i] >= a[c]) {
          acc += static_cast<double>(dy[i]);  // d y_q / d alpha = 1 (eq. 3)
        } else if (dx && in[i] >= T(0)) {
          dx[i] += dy[i];  // STE inside [0, alpha)
        }
      }
    };
    const std::vector<double> da = detail::channel_sums(l, per_run);
    if (!an.requires_grad) return;
    T* dalpha = autograd::input_grad(an).data();
    for (std::size_t c = 0; c < da.size(); ++c) dalpha[c] += static_cast<T>(da[c]);
  });
}

}  // namespace xquant::nn::functional
