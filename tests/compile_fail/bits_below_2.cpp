// expect: bit width must be between 2 and 16; change B in unsigned_bits<B>
// One bit cannot hold a zero point and a value on each side.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::unsigned_bits<1>>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
