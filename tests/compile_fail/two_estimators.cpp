// expect: give at most one gradient estimator: ste, clipped_ste or lsq
// Contradictory estimators.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::ste, xquant::lsq>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
