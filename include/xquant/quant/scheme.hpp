#pragma once
// scheme<Tags...>: a complete quantizer description assembled from policy tags in any
// order, e.g.
//
//   using weights     = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
//   using activations = scheme<unsigned_bits<8>, asymmetric>;
//
// Exactly one integer range is required; every other kind has a default:
// asymmetric, per_tensor, round_half_even, float_scale, clipped_ste.
// Invalid descriptions fail to compile with a message that says what to change.
//
// The scheme also fixes the storage: values of up to 8 bits are held as int8/uint8,
// wider ones as int16/uint16; in a quantized_tensor, 2-bit values are packed four to a
// byte and 3- or 4-bit values two to a byte.

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "xquant/quant/range.hpp"
#include "xquant/quant/tags.hpp"

namespace xquant {

namespace detail {

template <class T>
concept policy_tag = requires { typename T::kind; } &&
    (std::same_as<typename T::kind, range_tag> || std::same_as<typename T::kind, mapping_tag> ||
     std::same_as<typename T::kind, granularity_tag> ||
     std::same_as<typename T::kind, rounding_tag> || std::same_as<typename T::kind, scale_tag> ||
     std::same_as<typename T::kind, estimator_tag> || std::same_as<typename T::kind, clipping_tag>);

template <class T>
constexpr bool is_policy_tag() {
  return policy_tag<T>;
}

template <class Kind, class T>
constexpr int is_kind() {
  if constexpr (policy_tag<T>) {
    return std::same_as<typename T::kind, Kind> ? 1 : 0;
  } else {
    return 0;
  }
}

template <class Kind, class... Tags>
inline constexpr int count_kind = (0 + ... + is_kind<Kind, Tags>());

// The first tag of kind Kind, or Default.
template <class Kind, class Default, class... Tags>
struct pick {
  using type = Default;
};
template <class Kind, class Default, class First, class... Rest>
struct pick<Kind, Default, First, Rest...> {
  using type = std::conditional_t<is_kind<Kind, First>() == 1, First,
                                  typename pick<Kind, Default, Rest...>::type>;
};
template <class Kind, class Default, class... Tags>
using pick_t = typename pick<Kind, Default, Tags...>::type;

// Placeholder range used only when the user gave none, so that the missing-range
// static_assert is the one error reported.
using missing_range = int_range<-128, 127>;

template <class Range>
using storage_for = std::conditional_t<
    (Range::bits <= 8), std::conditional_t<Range::is_signed, std::int8_t, std::uint8_t>,
    std::conditional_t<Range::is_signed, std::int16_t, std::uint16_t>>;

constexpr int container_bits(int bits) { return bits <= 2 ? 2 : bits <= 4 ? 4 : bits <= 8 ? 8 : 16; }

}  // namespace detail

struct scheme_marker {};

template <class... Tags>
struct scheme : scheme_marker {
  static_assert((detail::is_policy_tag<Tags>() && ...),
                "xquant: scheme<...> accepts only policy tags: a range (signed_bits<B>, "
                "unsigned_bits<B>, narrow_bits<B>, int_range<Lo, Hi>), symmetric/asymmetric, "
                "per_tensor/per_axis<A>, round_half_even/round_half_away, "
                "float_scale/power_of_two_scale, ste/clipped_ste/lsq, no_clipping/mse_clipping");
  static_assert(detail::count_kind<range_tag, Tags...> == 1,
                "xquant: a scheme needs exactly one integer range, e.g. signed_bits<8>, "
                "unsigned_bits<8> or narrow_bits<8>");
  static_assert(detail::count_kind<mapping_tag, Tags...> <= 1,
                "xquant: give at most one mapping: symmetric or asymmetric");
  static_assert(detail::count_kind<granularity_tag, Tags...> <= 1,
                "xquant: give at most one granularity: per_tensor or per_axis<A>");
  static_assert(detail::count_kind<rounding_tag, Tags...> <= 1,
                "xquant: give at most one rounding rule: round_half_even or round_half_away");
  static_assert(detail::count_kind<scale_tag, Tags...> <= 1,
                "xquant: give at most one scale kind: float_scale or power_of_two_scale");
  static_assert(detail::count_kind<estimator_tag, Tags...> <= 1,
                "xquant: give at most one gradient estimator: ste, clipped_ste or lsq");
  static_assert(detail::count_kind<clipping_tag, Tags...> <= 1,
                "xquant: give at most one clipping rule: no_clipping or mse_clipping");

  using range = detail::pick_t<range_tag, detail::missing_range, Tags...>;
  using mapping = detail::pick_t<mapping_tag, asymmetric, Tags...>;
  using granularity = detail::pick_t<granularity_tag, per_tensor, Tags...>;
  using rounding = detail::pick_t<rounding_tag, round_half_even, Tags...>;
  using scale_kind = detail::pick_t<scale_tag, float_scale, Tags...>;
  using estimator = detail::pick_t<estimator_tag, clipped_ste, Tags...>;
  using clipping = detail::pick_t<clipping_tag, no_clipping, Tags...>;

  static constexpr int qmin = range::lo;
  static constexpr int qmax = range::hi;
  static constexpr int bits = range::bits;
  static constexpr bool is_symmetric = std::is_same_v<mapping, symmetric>;
  static constexpr bool is_per_axis = granularity::axis >= 0;
  static constexpr int axis = granularity::axis;
  static constexpr bool power_of_two = std::is_same_v<scale_kind, power_of_two_scale>;
  static constexpr bool mse_clipped = std::is_same_v<clipping, mse_clipping>;

  static_assert(!is_symmetric || range::is_signed,
                "xquant: symmetric mapping fixes the zero point at 0, which an unsigned range "
                "cannot centre; use asymmetric with unsigned_bits<B>, or symmetric with "
                "signed_bits<B> / narrow_bits<B>");
  static_assert(!(power_of_two && std::is_same_v<estimator, lsq>),
                "xquant: lsq learns a continuous step size and cannot keep it a power of two; "
                "use float_scale with lsq, or ste/clipped_ste with power_of_two_scale");
  static_assert(!(mse_clipped && std::is_same_v<estimator, lsq>),
                "xquant: lsq learns its range (the step size), so mse_clipping would have nothing "
                "to choose; use lsq with no_clipping, or mse_clipping with ste/clipped_ste");

  /// Integer type of one unpacked value.
  using value_type = detail::storage_for<range>;
  /// Bits one value occupies in a packed quantized_tensor (2, 4, 8 or 16).
  static constexpr int container_bits = detail::container_bits(bits);
  static constexpr int values_per_byte = container_bits < 8 ? 8 / container_bits : 1;
};

template <class S>
concept quant_scheme = std::derived_from<S, scheme_marker> && requires {
  typename S::range;
  typename S::value_type;
};

/// Float32: no quantization. Used as the default bundle of layers.
struct no_quant {};

/// A layer's quantization: how its weights and its output activations are quantized.
template <quant_scheme Weight, quant_scheme Activation>
struct bundle {
  using weight = Weight;
  using activation = Activation;
};

/// The W/A bundles of the reference recipe: weights int symmetric per output channel
/// with the narrow range, activations asymmetric per tensor.
namespace detail {
/// The clipping rule of wa_bundle's schemes: min/max at 5 bits and more; at 4 bits and
/// fewer (16 levels or less) the MSE-optimal range, unless the range is learned (lsq).
template <int Bits, class Estimator>
using wa_clipping = std::conditional_t<(Bits <= 4 && !std::is_same_v<Estimator, lsq>), mse_clipping, no_clipping>;
}  // namespace detail

template <int WeightBits, int ActivationBits, class Estimator = clipped_ste>
using wa_bundle =
    bundle<scheme<narrow_bits<WeightBits>, symmetric, per_axis<0>, Estimator, detail::wa_clipping<WeightBits, Estimator>>,
           scheme<unsigned_bits<ActivationBits>, asymmetric, per_tensor, Estimator,
                  detail::wa_clipping<ActivationBits, Estimator>>>;

using w8a8 = wa_bundle<8, 8>;
using w4a8 = wa_bundle<4, 8>;
using w4a4 = wa_bundle<4, 4>;
using w8a16 = bundle<scheme<narrow_bits<8>, symmetric, per_axis<0>>,
                     scheme<signed_bits<16>, symmetric, per_tensor>>;

}  // namespace xquant
