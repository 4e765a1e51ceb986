// Int8 GEMM throughput (kernels/int8/gemm.hpp) against this core's measured int8 peak.
//
// Peak: before the benchmarks run, main() times a loop of 16 independent vpdpbusd chains on
// zmm (AVX-512 VNNI; ymm AVX-VNNI if only that is compiled in; without VNNI, pmaddwd + paddd
// chains on simd::default_arch, what the generic path can reach), best of several runs.
// Rates are GOPS counting a multiply-add as 2 ops (one vpdpbusd zmm = 64 MACs = 128 ops),
// of the calling thread's CPU time; `of_peak` is the fraction of that peak. The benchmark
// `int8_peak` re-measures the peak the same way.
//
// Products (each through every path this binary has and the CPU runs: avx512_vnni,
// avx_vnni, generic on avx512bw / avx2 (the AVX2 path) / sse2), per-channel requantization
// fused, uint8 output:
//   square_512      M = N = K = 512
//   conv3x3_56      M = 3136 (56 x 56 pixels), K = 576 (3 x 3 x 64), N = 64
//   conv1x1_56      M = 3136, K = 64, N = 256 (a 1 x 1 expansion)
//   conv3x3_16      M = 784 x 64 (28 x 28 pixels, 64 images), K = 144, N = 16: resnet's
//                   16-channel 3x3 layers, the shape its batch time is spent on
//   conv1x1_16_64   M = 784 x 64, K = 16, N = 64: mobilenet's first expansion (the
//                   epilogue's share is largest when K is small)
//   dense_b1        M = 1, K = 3136, N = 128 (batch-1 dense layer)
// and the whole 3x3 convolution 64 -> 64 on 56 x 56 (padding 1) as the int8 engine runs it
// (kernels/int8/conv.hpp: the image copied into its zero-point frame, then the GEMM reading
// its windows in place), `int8_conv/conv3x3_56`.
//
//   bench_int8_gemm --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "xquant/kernels/int8/conv.hpp"
#include "xquant/kernels/int8/gemm.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace {

using namespace xquant;
using namespace xquant::kernels;

// ---- peak --------------------------------------------------------------------------------

constexpr std::size_t chains = 16;

#if XQUANT_INT8_AVX512_VNNI || XQUANT_INT8_AVX_VNNI
#if XQUANT_INT8_AVX512_VNNI
using peak_regs = int8::gemm_detail::zmm_dpbusd;
const char* peak_kind = "vpdpbusd zmm";
#else
using peak_regs = int8::gemm_detail::ymm_dpbusd;
const char* peak_kind = "vpdpbusd ymm";
#endif
/// `steps` rounds of 16 independent vpdpbusd; returns the ops done (2 per multiply-add).
double peak_loop(std::size_t steps) {
  using reg = peak_regs::reg;
  reg acc[chains];  // (every loop over acc unrolled, or GCC keeps acc in memory)
#pragma GCC unroll 16
  for (std::size_t i = 0; i < chains; ++i) acc[i] = peak_regs::broadcast(std::uint32_t(i));
  const reg a = peak_regs::broadcast(0x01020304u), w = peak_regs::broadcast(0xFF01FF01u);
  for (std::size_t s = 0; s < steps; ++s) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < chains; ++i) acc[i] = peak_regs::dot(acc[i], a, w);
  }
  reg sum = acc[0];
#pragma GCC unroll 16
  for (std::size_t i = 1; i < chains; ++i) sum = peak_regs::add(sum, acc[i]);
  benchmark::DoNotOptimize(sum);
  return 2.0 * 4.0 * double(sizeof(reg) / 4) * double(chains) * double(steps);
}
#else
const char* peak_kind = "pmaddwd + paddd (no VNNI compiled in)";
double peak_loop(std::size_t steps) {
  using A = simd::default_arch;
  using I32 = simd::batch<std::int32_t, A>;
  using I16 = simd::batch<std::int16_t, A>;
  I32 acc[chains];
#pragma GCC unroll 16
  for (std::size_t i = 0; i < chains; ++i) acc[i] = I32(std::int32_t(i));
  const I16 a(std::int16_t{3}), w(std::int16_t{-5});
  for (std::size_t s = 0; s < steps; ++s) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < chains; ++i) acc[i] += int8::gemm_detail::madd<A>(a, w);
  }
  I32 sum = acc[0];
#pragma GCC unroll 16
  for (std::size_t i = 1; i < chains; ++i) sum += acc[i];
  benchmark::DoNotOptimize(sum);
  return 2.0 * double(I16::size) * double(chains) * double(steps);
}
#endif

/// CPU time of the calling thread, in seconds (what Google Benchmark reports as "CPU").
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

/// Best of several ~20 ms runs, in ops/s of thread CPU time.
double measure_peak() {
  double best = 0;
  for (int run = 0; run < 9; ++run) {
    const double t0 = thread_seconds();
    const double ops = peak_loop(std::size_t{1} << 20);
    best = std::max(best, ops / (thread_seconds() - t0));
  }
  return best;
}

double peak_ops = 0;  // set in main()

void int8_peak(benchmark::State& state) {
  double ops = 0;
  for (auto _ : state) ops += peak_loop(std::size_t{1} << 18);
  state.counters["GOPS"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["of_peak"] = benchmark::Counter(ops / peak_ops, benchmark::Counter::kIsRate);
}

// ---- products ----------------------------------------------------------------------------

struct shape {
  const char* name;
  std::size_t m, n, k;
};

struct problem {
  std::vector<std::uint8_t> a, c;
  std::vector<std::int32_t> bias;
  requant_channel_params rq;
  int8::packed_weights w;

  explicit problem(const shape& s) : a(s.m * s.k), c(s.m * s.n), bias(s.n) {
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127), b(-5000, 5000);
    std::vector<std::int8_t> weights(s.n * s.k);
    for (auto& x : a) x = static_cast<std::uint8_t>(u8(rng));
    for (auto& x : weights) x = static_cast<std::int8_t>(s8(rng));
    for (auto& x : bias) x = b(rng);
    std::vector<float> scales(s.n);
    std::uniform_real_distribution<float> sc(1e-5f, 1e-4f);
    for (auto& x : scales) x = sc(rng);
    rq = make_requant_channel_params<std::uint8_t>(scales, 128);
    w = int8::pack_weights(weights.data(), s.n, s.k);
    int8::check_gemm_args(s.m, a.data(), s.k, w, rq.args(), c.data(), s.n);
  }
};

template <class Arch>
void run_gemm(benchmark::State& state, shape s, int8::gemm_path path) {
  problem p(s);
  const requant_channel_args rq = p.rq.args();
  for (auto _ : state) {
    int8::gemm<Arch>(path, s.m, p.a.data(), s.k, p.w, p.bias.data(), rq, p.c.data(), s.n);
    benchmark::ClobberMemory();
  }
  const double ops = 2.0 * double(s.m) * double(s.n) * double(s.k) * double(state.iterations());
  state.counters["GOPS"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["of_peak"] = benchmark::Counter(ops / peak_ops, benchmark::Counter::kIsRate);
}

/// The 3x3 convolution of conv3x3_56 through conv_nhwc (same operation count).
template <class Arch>
void run_conv(benchmark::State& state, int8::gemm_path path) {
  const auto g = int8::make_im2col_geometry({1, 56, 56, 64}, 3, 3, 1, 1, 1, 1);
  const shape s{"conv3x3_56", g.rows(), 64, g.cols()};
  problem p(s);  // its weights (as packed for the GEMM), bias and requantization
  std::mt19937 rng(2);
  std::vector<std::uint8_t> x(g.in.size()), scratch(int8::implicit_conv_scratch(g));
  for (auto& v : x) v = static_cast<std::uint8_t>(rng());
  std::vector<std::int8_t> weights(s.n * s.k);
  for (auto& v : weights) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
  const int8::packed_weights w = int8::pack_conv_weights(weights.data(), s.n, g);
  const requant_channel_args rq = p.rq.args();
  int8::check_conv_args(x.data(), g, w, rq, p.c.data(), scratch.data());
  for (auto _ : state) {
    int8::conv_nhwc<Arch>(path, x.data(), g, 128, w, p.bias.data(), rq, p.c.data(), scratch.data());
    benchmark::ClobberMemory();
  }
  const double ops = 2.0 * double(s.m) * double(s.n) * double(s.k) * double(state.iterations());
  state.counters["GOPS"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["of_peak"] = benchmark::Counter(ops / peak_ops, benchmark::Counter::kIsRate);
}

template <class Arch>
void add(const shape& s, int8::gemm_path path, const std::string& label) {
  const std::string name = std::string("int8_gemm/") + s.name + "/" + label;
  benchmark::RegisterBenchmark(name.c_str(), [s, path](benchmark::State& st) { run_gemm<Arch>(st, s, path); })
      ->Unit(benchmark::kMicrosecond);
}

void register_all() {
  benchmark::RegisterBenchmark("int8_peak", int8_peak)->Unit(benchmark::kMicrosecond);
  const shape shapes[] = {{"square_512", 512, 512, 512},
                          {"conv3x3_56", 3136, 64, 576},
                          {"conv1x1_56", 3136, 256, 64},
                          {"conv3x3_16", 784 * 64, 16, 144},
                          {"conv1x1_16_64", 784 * 64, 64, 16},
                          {"dense_b1", 1, 128, 3136}};
  for (int8::gemm_path path : {int8::gemm_path::avx512_vnni, int8::gemm_path::avx_vnni}) {
    if (!int8::runs_here(path)) continue;
    const std::string name = std::string("int8_conv/conv3x3_56/") + int8::path_name(path);
    benchmark::RegisterBenchmark(name.c_str(), [path](benchmark::State& st) {
      run_conv<simd::default_arch>(st, path);
    })->Unit(benchmark::kMicrosecond);
  }
  for (const shape& s : shapes) {
    for (int8::gemm_path path : {int8::gemm_path::avx512_vnni, int8::gemm_path::avx_vnni}) {
      if (int8::runs_here(path)) add<simd::default_arch>(s, path, int8::path_name(path));
    }
    simd::for_each_arch(simd::compiled_archs{}, [&](auto arch) {
      using Arch = decltype(arch);
      constexpr bool wanted = std::is_same_v<Arch, xsimd::avx512bw> || std::is_same_v<Arch, xsimd::avx2> ||
                              std::is_same_v<Arch, xsimd::sse2>;
      if (wanted && simd::available<Arch>())
        add<Arch>(s, int8::gemm_path::generic, std::string("generic_") + Arch::name());
    });
  }
}

}  // namespace
XQUANT_SIMD_END

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  peak_ops = measure_peak();
  benchmark::AddCustomContext("int8_peak_kind", peak_kind);
  benchmark::AddCustomContext("int8_peak_GOPS", std::to_string(peak_ops * 1e-9));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
