// expect: int_range<Lo, Hi> needs Lo < Hi
// A range with one level quantizes nothing.
#include "xquant/quant/scheme.hpp"

[[maybe_unused]] constexpr int lo = xquant::int_range<0, 0>::lo;

int main() { return 0; }
