// expect: bit width must be between 2 and 16; change B in narrow_bits<B>
// narrow_bits<0> has no levels.
#include "xquant/quant/scheme.hpp"

[[maybe_unused]] constexpr int hi = xquant::narrow_bits<0>::hi;

int main() { return 0; }
