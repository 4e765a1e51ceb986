// expect: per_axis<A> needs a non-negative axis index
// Axes are counted from 0.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::per_axis<-1>>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
