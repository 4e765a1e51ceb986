// expect: a scheme needs exactly one integer range
// Two ranges are ambiguous.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, xquant::unsigned_bits<8>>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
