#include <cstdio>

#include <xquant/xquant.hpp>

int main() {
  using act = xquant::scheme<xquant::unsigned_bits<8>, xquant::asymmetric>;
  const xquant::quant_params p = xquant::choose_params<act>(-1.0f, 3.0f);
  const xquant::array<float> x = {-1.0f, 0.0f, 1.5f, 3.0f};
  const auto q = xquant::quantized_tensor<act>::quantize(x, p);
  const xquant::array<float> back = q.dequantize();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float err = back(i) - x(i);
    if (err > p.scale[0] / 2 || err < -p.scale[0] / 2) {
      std::printf("round trip error %g at %zu\n", static_cast<double>(err), i);
      return 1;
    }
  }
  std::printf("xquant %d.%d.%d consumer ok\n", xquant::version_major, xquant::version_minor,
              xquant::version_patch);
  return 0;
}
