// expect: scheme<...> accepts only policy tags
// int is not a policy tag.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::signed_bits<8>, int>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
