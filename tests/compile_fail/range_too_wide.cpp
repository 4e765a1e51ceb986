// expect: an integer range must span 2 to 16 bits
// int_range<0, 70000> needs 17 bits.
#include "xquant/quant/scheme.hpp"

[[maybe_unused]] constexpr int lo = xquant::int_range<0, 70000>::lo;

int main() { return 0; }
