// expect: a scheme needs exactly one integer range
// Every scheme names its integer range.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::symmetric, xquant::per_tensor>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
