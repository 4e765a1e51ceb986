// expect: give at most one scale kind: float_scale or power_of_two_scale
// Contradictory scale kinds.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::float_scale, xquant::power_of_two_scale>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
