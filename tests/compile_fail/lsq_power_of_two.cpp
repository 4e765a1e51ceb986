// expect: lsq learns a continuous step size and cannot keep it a power of two
// LSQ's learned scale is continuous.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::symmetric, xquant::power_of_two_scale, xquant::lsq>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
