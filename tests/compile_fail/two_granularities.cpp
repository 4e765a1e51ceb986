// expect: give at most one granularity: per_tensor or per_axis<A>
// Contradictory granularities.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::per_tensor, xquant::per_axis<0>>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
