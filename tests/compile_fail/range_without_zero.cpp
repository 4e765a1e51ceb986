// expect: an integer range must contain 0 so that real zero is exactly representable
// Real zero must map to an integer exactly.
#include "xquant/quant/scheme.hpp"

[[maybe_unused]] constexpr int lo = xquant::int_range<1, 10>::lo;

int main() { return 0; }
