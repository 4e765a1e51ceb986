// expect: lsq learns its range \(the step size\), so mse_clipping would have nothing
// LSQ learns the range that mse_clipping would choose.
#include "xquant/quant/scheme.hpp"

using bad = xquant::scheme<xquant::unsigned_bits<4>, xquant::lsq, xquant::mse_clipping>;
[[maybe_unused]] constexpr int lo = bad::qmin;

int main() { return 0; }
