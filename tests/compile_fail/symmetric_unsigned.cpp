// expect: symmetric mapping fixes the zero point at 0, which an unsigned range cannot centre
// Symmetric needs a signed range.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::unsigned_bits<8>, xquant::symmetric>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
