// The non-GEMM int8 kernels: scalar reference vs the xsimd kernels, on the shapes of small
// mobile networks. items/s = output elements per second.
//
//   depthwise 3x3   C x H x W = 96 x 14 x 14 and 144 x 28 x 28, stride 1 and 2, per channel
//   add             28 x 28 x 32 and 14 x 14 x 96 elements (residual add, fused ReLU)
//   max pool 2x2    28 x 28 x 32 and 14 x 14 x 64 -> half size
//   global avg pool 7 x 7 x 128 and 7 x 7 x 1280
//   conv 3x3        1 -> 16 on 28 x 28 and 32 -> 32 on 14 x 14 (pad 1; the implicit
//                   convolution against im2col + the reference GEMM)
//   quantize        the network input, 1 x 28 x 28 and 3 x 32 x 32 float NCHW -> uint8 NHWC
//
// Each kernel is registered for the scalar reference and for avx512bw, avx2 and sse2 when
// they are compiled in and the CPU has them. Every benchmark runs 5 repetitions and reports
// their mean, median and spread. Build and run:
//   g++ -std=c++20 -O3 -march=native -I include benchmarks/bench_int8_ops.cpp -lbenchmark -lpthread

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "xquant/kernels/int8/add.hpp"
#include "xquant/kernels/int8/boundary.hpp"
#include "xquant/kernels/int8/depthwise.hpp"
#include "xquant/kernels/int8/conv.hpp"
#include "xquant/kernels/int8/pool.hpp"
#include "xquant/kernels/reference/int8/add.hpp"
#include "xquant/kernels/reference/int8/boundary.hpp"
#include "xquant/kernels/reference/int8/depthwise.hpp"
#include "xquant/kernels/reference/int8/conv.hpp"
#include "xquant/kernels/reference/int8/pool.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/simd.hpp"

namespace {

using namespace xquant::kernels;
namespace ref = xquant::kernels::reference::int8;
using int8::nhwc_shape;

std::mt19937 rng(42);

std::vector<std::uint8_t> random_bytes(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) x = static_cast<std::uint8_t>(rng());
  return v;
}

// ---- the problems ----------------------------------------------------------------------

struct depthwise_problem {
  int8::depthwise_geometry g;
  std::vector<std::uint8_t> x, out, scratch;
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> bias;
  requant_channel_params rq;
  int8::depthwise_packed packed;

  depthwise_problem(std::size_t c, std::size_t hw, std::size_t stride)
      : g(int8::make_depthwise_geometry({1, hw, hw, c}, stride)),
        x(random_bytes(g.in.size())),
        out(g.out().size()),
        scratch(int8::depthwise_scratch(g)) {
    std::uniform_int_distribution<int> weight(-127, 127), b(-20000, 20000);
    std::uniform_real_distribution<float> scale(0.001f, 0.004f);
    w.resize(9 * c);
    for (auto& v : w) v = static_cast<std::int8_t>(weight(rng));
    bias.resize(c);
    for (auto& v : bias) v = b(rng);
    std::vector<float> scales(c);
    for (auto& s : scales) s = scale(rng);
    rq = make_requant_channel_params<std::uint8_t>(scales, 3, 3, 255);
    packed = int8::pack_depthwise3x3(w, bias, 128);
  }
};

struct add_problem {
  std::vector<std::uint8_t> a, b, out;
  int8::add_params k = int8::make_add_params(0.031f, 120, 0.027f, 131, 0.045f, 97, 97, 255);
  explicit add_problem(std::size_t n) : a(random_bytes(n)), b(random_bytes(n)), out(n) {}
};

struct pool_problem {
  nhwc_shape in;
  std::vector<std::uint8_t> x, out;
  int8::global_avg_pool_params avg;
  pool_problem(std::size_t c, std::size_t hw, bool global)
      : in{1, hw, hw, c},
        x(random_bytes(in.size())),
        out(global ? c : int8::max_pool2x2_output(in).size()),
        avg(int8::make_global_avg_pool_params(in, 0.02f, 128, 0.02f, 128)) {}
};

struct conv_problem {
  int8::im2col_geometry g;
  std::size_t n;
  std::vector<std::uint8_t> x, out, scratch;
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> bias;
  requant_channel_params rq;
  int8::packed_weights packed;
  conv_problem(std::size_t c, std::size_t channels_out, std::size_t hw)
      : g(int8::make_im2col_geometry({1, hw, hw, c}, 3, 3, 1, 1, 1, 1)),
        n(channels_out),
        x(random_bytes(g.in.size())),
        out(g.rows() * n),
        scratch(int8::implicit_conv_scratch(g)),
        w(n * g.cols()),
        bias(n) {
    std::uniform_int_distribution<int> weight(-127, 127), b(-20000, 20000);
    for (auto& v : w) v = static_cast<std::int8_t>(weight(rng));
    for (auto& v : bias) v = b(rng);
    rq = make_requant_channel_params<std::uint8_t>(std::vector<float>(n, 0.0005f), 3, 3, 255);
    packed = int8::pack_conv_weights(w.data(), n, g);
  }
};

struct quantize_problem {
  nhwc_shape s;
  std::vector<float> x;
  std::vector<std::uint8_t> out;
  int8::activation_quant q = int8::make_activation_quant(0.0123f, 33);
  quantize_problem(std::size_t c, std::size_t hw) : s{1, hw, hw, c}, x(s.size()), out(s.size()) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& v : x) v = d(rng);
  }
};

// ---- registration ------------------------------------------------------------------------

template <class Problem, class Kernel>
void add_benchmark(const std::string& name, Problem problem, std::size_t items, Kernel kernel) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [problem, items, kernel](benchmark::State& state) mutable {
                                 for (auto _ : state) {
                                   kernel(problem);
                                   benchmark::ClobberMemory();
                                 }
                                 state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(items));
                               })
      ->Repetitions(5)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMicrosecond);
}

/// Registers kernel(problem, arch) under "<name>/<arch>" for the reference ("reference",
/// arch = void) and the SIMD archs.
template <class Problem, class Kernel>
void add_all(const std::string& name, const Problem& problem, std::size_t items, Kernel kernel) {
  add_benchmark(name + "/reference", problem, items, [kernel](Problem& p) { kernel(p, static_cast<void*>(nullptr)); });
  xquant::simd::for_each_arch(xquant::simd::compiled_archs{}, [&](auto arch) {
    using Arch = decltype(arch);
    const std::string arch_name = Arch::name();
    if (!xquant::simd::available<Arch>() || (arch_name != "avx512bw" && arch_name != "avx2" && arch_name != "sse2")) {
      return;
    }
    add_benchmark(name + "/" + arch_name, problem, items, [kernel](Problem& p) { kernel(p, Arch{}); });
  });
}

template <class Arch>
constexpr bool is_reference = std::is_same_v<Arch, void*>;

void register_depthwise(std::size_t c, std::size_t hw, std::size_t stride) {
  const depthwise_problem problem(c, hw, stride);
  const std::string name = "depthwise3x3/" + std::to_string(c) + "x" + std::to_string(hw) + "x" + std::to_string(hw) +
                           "/stride" + std::to_string(stride);
  add_all(name, problem, problem.out.size(), [](depthwise_problem& p, auto arch) {
    using Arch = decltype(arch);
    if constexpr (is_reference<Arch>) {
      ref::depthwise3x3(p.x.data(), p.g, p.w.data(), p.bias.data(), 128, p.rq.args(), p.out.data());
    } else {
      int8::depthwise3x3<Arch>(p.x.data(), p.g, p.packed, p.rq.args(), p.out.data(), p.scratch.data());
    }
  });
}

void register_add(std::size_t n, const std::string& shape) {
  add_all("add_relu/" + shape, add_problem(n), n, [](add_problem& p, auto arch) {
    using Arch = decltype(arch);
    if constexpr (is_reference<Arch>) {
      ref::add(p.a.data(), p.b.data(), p.a.size(), p.k, p.out.data());
    } else {
      int8::add<Arch>(p.a.data(), p.b.data(), p.a.size(), p.k, p.out.data());
    }
  });
}

void register_pools(std::size_t c, std::size_t hw, bool global) {
  const pool_problem problem(c, hw, global);
  const std::string shape = std::to_string(c) + "x" + std::to_string(hw) + "x" + std::to_string(hw);
  add_all((global ? "global_avg_pool/" : "max_pool2x2/") + shape, problem, problem.out.size(),
          [global](pool_problem& p, auto arch) {
            using Arch = decltype(arch);
            if constexpr (is_reference<Arch>) {
              if (global) {
                ref::global_avg_pool(p.x.data(), p.avg, p.out.data());
              } else {
                ref::max_pool2x2(p.x.data(), p.in, p.out.data());
              }
            } else if (global) {
              int8::global_avg_pool<Arch>(p.x.data(), p.avg, p.out.data());
            } else {
              int8::max_pool2x2<Arch>(p.x.data(), p.in, p.out.data());
            }
          });
}

void register_conv(std::size_t c, std::size_t n, std::size_t hw) {
  const conv_problem problem(c, n, hw);
  add_all("conv3x3/" + std::to_string(c) + "to" + std::to_string(n) + "x" + std::to_string(hw) + "x" +
              std::to_string(hw),
          problem, problem.out.size(), [](conv_problem& p, auto arch) {
            using Arch = decltype(arch);
            if constexpr (is_reference<Arch>) {
              ref::conv_nhwc(p.x.data(), p.g, 7, p.w.data(), p.n, p.bias.data(), p.rq.args(), p.out.data());
            } else {
              int8::conv_nhwc<Arch>(p.x.data(), p.g, 7, p.packed, p.bias.data(), p.rq.args(), p.out.data(),
                                    p.scratch.data());
            }
          });
}

void register_quantize(std::size_t c, std::size_t hw) {
  const quantize_problem problem(c, hw);
  add_all("quantize_input/" + std::to_string(c) + "x" + std::to_string(hw) + "x" + std::to_string(hw), problem,
          problem.out.size(), [](quantize_problem& p, auto arch) {
            using Arch = decltype(arch);
            bool ok = false;
            if constexpr (is_reference<Arch>) {
              ok = ref::quantize_nchw_to_nhwc(p.x.data(), p.s, p.q, p.out.data());
            } else {
              ok = int8::quantize_nchw_to_nhwc<Arch>(p.x.data(), p.s, p.q, p.out.data());
            }
            benchmark::DoNotOptimize(ok);
          });
}

}  // namespace

int main(int argc, char** argv) {
  register_depthwise(96, 14, 1);
  register_depthwise(144, 28, 1);
  register_depthwise(144, 28, 2);
  register_add(28 * 28 * 32, "32x28x28");
  register_add(14 * 14 * 96, "96x14x14");
  register_pools(32, 28, false);
  register_pools(64, 14, false);
  register_pools(128, 7, true);
  register_pools(1280, 7, true);
  register_conv(1, 16, 28);
  register_conv(32, 32, 14);
  register_quantize(1, 28);
  register_quantize(3, 32);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
