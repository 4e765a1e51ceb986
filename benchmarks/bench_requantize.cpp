// Requantization throughput: scalar reference vs the xsimd kernels, both paths, int8
// output, n = 4096 and 65536 accumulators (items/s = accumulators per second).
//
// The SIMD kernels are registered once per compiled-in arch this CPU can run, so a
// -march=native build compares sse2 ... avx512bw in one run; a default-arch build has sse2.
// Per-channel kernels use 64 channels (an NHWC epilogue) and n / 64 rows.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"

namespace {

using namespace xquant::kernels;
using out_t = std::int8_t;
constexpr std::size_t channels = 64;

struct data {
  std::vector<std::int32_t> acc;
  std::vector<out_t> out;
  requant_args args;
  requant_channel_params channel;

  explicit data(std::size_t n) : acc(n), out(n) {
    std::mt19937 rng(42);
    std::normal_distribution<double> gemm(0.0, 4096.0);  // a typical int8 GEMM accumulator
    for (auto& a : acc) a = static_cast<std::int32_t>(gemm(rng));
    args = make_requant_args<out_t>(0.0123f, -3);
    std::vector<float> scales(channels);
    std::uniform_real_distribution<float> s(0.002f, 0.02f);
    for (auto& x : scales) x = s(rng);
    channel = make_requant_channel_params<out_t>(scales, -3);
  }
};

template <class Kernel>
void run(benchmark::State& state, Kernel kernel) {
  const auto n = static_cast<std::size_t>(state.range(0));
  data d(n);
  for (auto _ : state) {
    kernel(d);
    benchmark::DoNotOptimize(d.out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

void add(const std::string& name, auto kernel) {
  benchmark::RegisterBenchmark(name.c_str(), [kernel](benchmark::State& s) { run(s, kernel); })
      ->Arg(4096)
      ->Arg(65536);
}

void register_reference() {
  add("fixed/reference",
      [](data& d) { reference::requantize_fixed(d.acc.data(), d.acc.size(), d.args, d.out.data()); });
  add("float/reference",
      [](data& d) { reference::requantize_float(d.acc.data(), d.acc.size(), d.args, d.out.data()); });
  add("fixed_per_channel/reference", [](data& d) {
    reference::requantize_fixed_per_channel(d.acc.data(), d.acc.size() / channels, channels, d.channel.args(),
                                            d.out.data());
  });
  add("float_per_channel/reference", [](data& d) {
    reference::requantize_float_per_channel(d.acc.data(), d.acc.size() / channels, channels, d.channel.args(),
                                            d.out.data());
  });
}

template <class Arch>
void register_simd() {
  const std::string arch = Arch::name();
  add("fixed/" + arch,
      [](data& d) { requantize_fixed<Arch>(d.acc.data(), d.acc.size(), d.args, d.out.data()); });
  add("float/" + arch,
      [](data& d) { requantize_float<Arch>(d.acc.data(), d.acc.size(), d.args, d.out.data()); });
  add("fixed_per_channel/" + arch, [](data& d) {
    requantize_fixed_per_channel<Arch>(d.acc.data(), d.acc.size() / channels, channels, d.channel.args(),
                                       d.out.data());
  });
  add("float_per_channel/" + arch, [](data& d) {
    requantize_float_per_channel<Arch>(d.acc.data(), d.acc.size() / channels, channels, d.channel.args(),
                                       d.out.data());
  });
}

}  // namespace

int main(int argc, char** argv) {
  register_reference();
  xquant::simd::for_each_arch(xquant::simd::compiled_archs{}, [](auto arch) {
    if (xquant::simd::available<decltype(arch)>()) register_simd<decltype(arch)>();
  });
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
