// expect: give at most one rounding rule: round_half_even or round_half_away
// Contradictory rounding rules.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::round_half_even, xquant::round_half_away>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
