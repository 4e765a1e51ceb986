// expect: bit width must be between 2 and 16; change B in signed_bits<B>
// A 17-bit range does not fit the 16-bit storage.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<17>>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
