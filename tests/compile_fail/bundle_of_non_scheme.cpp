// expect: quant_scheme
// A bundle is made of schemes, not raw ranges.
#include "xquant/quant/scheme.hpp"

using bad = xquant::bundle<xquant::signed_bits<8>, xquant::scheme<xquant::unsigned_bits<8>>>;
[[maybe_unused]] static bad b;

int main() { return 0; }
