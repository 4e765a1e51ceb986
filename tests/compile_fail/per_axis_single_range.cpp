// expect: is for per_tensor schemes; pass one value_range per channel
// A per-axis scheme needs one range per channel.
#include "xquant/quant/choose_params.hpp"

using w = xquant::scheme<xquant::narrow_bits<8>, xquant::symmetric, xquant::per_axis<0>>;
[[maybe_unused]] static auto p = xquant::choose_params<w>(-1.f, 1.f);

int main() { return 0; }
