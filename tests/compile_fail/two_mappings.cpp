// expect: give at most one mapping: symmetric or asymmetric
// Contradictory mappings.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::symmetric, xquant::asymmetric>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
