#pragma once
// Policy tags: small, data-only types that describe *what* a quantizer does. Each has a
// `kind` so that scheme<...> (scheme.hpp) can accept them in any order.
//
//   mapping      symmetric (zero point fixed at 0) | asymmetric (zero point chosen)
//   granularity  per_tensor | per_axis<A> (one scale and zero point per index of axis A)
//   rounding     round_half_even (default; ONNX QuantizeLinear, IEEE default mode)
//                | round_half_away (std::round; what many DSPs do)
//   scale        float_scale (default) | power_of_two_scale (scale = 2^k, so that
//                requantization is a shift on shift-only hardware)
//   estimator    the gradient of fake quantization in QAT:
//                ste          identity (Bengio et al. 2013)
//                clipped_ste  identity inside the range, 0 outside (default; PyTorch)
//                lsq          learned step size (Esser et al. 2019)
//   clipping     how a quantizer's range follows the data it observes:
//                no_clipping   the observed min/max (default; PyTorch's observers)
//                mse_clipping  the range that minimizes the quantization MSE of the
//                              observed data (Banner et al. 2019): it clips outliers to
//                              give the bulk a finer step, which pays below 8 bits

namespace xquant {

struct mapping_tag {};
struct granularity_tag {};
struct rounding_tag {};
struct scale_tag {};
struct estimator_tag {};
struct clipping_tag {};

struct symmetric {
  using kind = mapping_tag;
};
struct asymmetric {
  using kind = mapping_tag;
};

struct per_tensor {
  using kind = granularity_tag;
  static constexpr int axis = -1;
};

template <int Axis>
struct per_axis {
  using kind = granularity_tag;
  static constexpr int axis = Axis;
  static_assert(Axis >= 0,
                "xquant: per_axis<A> needs a non-negative axis index (0 = output channels "
                "of an OIHW weight)");
};

struct round_half_even {
  using kind = rounding_tag;
};
struct round_half_away {
  using kind = rounding_tag;
};

struct float_scale {
  using kind = scale_tag;
};
struct power_of_two_scale {
  using kind = scale_tag;
};

struct ste {
  using kind = estimator_tag;
};
struct clipped_ste {
  using kind = estimator_tag;
};
struct lsq {
  using kind = estimator_tag;
};

struct no_clipping {
  using kind = clipping_tag;
};
struct mse_clipping {
  using kind = clipping_tag;
};

}  // namespace xquant
