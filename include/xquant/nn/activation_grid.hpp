#pragma once
// The two plain types that describe a quantized activation, shared by tracing (nn/trace.hpp)
// and the int8 runtime (runtime/graph_types.hpp). No tensor or autograd dependency, so the
// runtime can be built without them (e.g. firmware with -fno-exceptions -fno-rtti).

#include <cstdint>

namespace xquant::nn {

/// An activation fused into the preceding layer (the layer's integer clamp).
enum class activation { none, relu, relu6 };

/// The integer grid of a quantized activation:
///   q = clamp(round(x / scale) + zero_point, qmin, qmax),  x ~ (q - zero_point) * scale.
struct activation_grid {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
  std::int32_t qmin = 0;
  std::int32_t qmax = 0;
};

}  // namespace xquant::nn
