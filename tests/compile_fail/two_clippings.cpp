// expect: give at most one clipping rule: no_clipping or mse_clipping
// Contradictory clipping rules.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::unsigned_bits<4>, xquant::mse_clipping, xquant::no_clipping>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
