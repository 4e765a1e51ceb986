// fp32 GEMM throughput against this core's measured FMA peak.
//
// Before the benchmarks run, main() measures the single-core fp32 peak with a loop of 12
// independent FMA chains over simd::default_arch batches (enough chains to fill every FMA
// pipe: latency x pipes <= 12 on current x86 cores), best of several runs. Every GEMM then
// reports GFLOP/s (2 m n k per product) and `of_peak`, its fraction of that peak; the
// benchmark `fma_peak` re-measures the peak the same way, as a normal benchmark.
//
// Products: square n x n x n (no transpose) at 256 / 512 / 1024 on one thread; 512 with
// every transpose; the GEMMs of the reference CNN's training step (im2col convolutions and
// the dense layer: forward, weight gradient dW and input gradient dX, batch 64 for the
// dense layer, one image per conv GEMM, and a whole batch of 32 images in one conv2
// GEMM); and 1024 on 2 threads (set_num_threads(2): the entry point splits C over the
// shared pool; of_peak is relative to one core). Everything goes through kernels::gemm,
// the entry point users call.
//
// Time: one-thread rates use the thread's CPU time, like the peak, so that other processes
// sharing the core (a busy build machine) disturb the ratio less; the scaling pair (1024
// on 1 and 2 threads, "real_time") uses wall-clock time and needs an idle machine.
//
//   bench_gemm --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "xquant/core/parallel.hpp"
#include "xquant/kernels/gemm.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace {

using namespace xquant;
using arch = simd::default_arch;
using V = simd::batch<float, arch>;

constexpr std::size_t chains = 12;

/// Runs `steps` rounds of 12 independent FMAs on batches; returns the flops done.
double fma_loop(std::size_t steps) {
  V acc[chains];
  for (std::size_t i = 0; i < chains; ++i) acc[i] = V(float(i));
  const V mul(0.999999f), add(1e-3f);  // acc converges to add / (1 - mul): no overflow
  for (std::size_t s = 0; s < steps; ++s) {
#pragma GCC unroll 12
    for (std::size_t i = 0; i < chains; ++i) acc[i] = kernels::gemm_detail::fma<arch>(acc[i], mul, add);
  }
  V sum = acc[0];
  for (std::size_t i = 1; i < chains; ++i) sum += acc[i];
  benchmark::DoNotOptimize(sum);
  return 2.0 * double(chains) * double(V::size) * double(steps);
}

/// CPU time of the calling thread, in seconds (what Google Benchmark reports as "CPU").
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

/// Best of several ~20 ms runs, in flop/s of thread CPU time.
double measure_peak() {
  double best = 0;
  for (int run = 0; run < 9; ++run) {
    const double t0 = thread_seconds();
    const double flops = fma_loop(std::size_t{1} << 22);
    best = std::max(best, flops / (thread_seconds() - t0));
  }
  return best;
}

double peak_flops = 0;  // set in main()

void fma_peak(benchmark::State& state) {
  double flops = 0;
  for (auto _ : state) flops += fma_loop(std::size_t{1} << 20);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["of_peak"] = benchmark::Counter(flops / peak_flops, benchmark::Counter::kIsRate);
}

struct shape {
  const char* name;
  bool ta, tb;
  std::size_t m, n, k;
};

/// One product through the public entry point kernels::gemm on `threads` threads of the
/// shared pool, repeated; C is overwritten (beta = 0), as the forward GEMMs do.
void run_gemm(benchmark::State& state, shape s, std::size_t threads) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
  for (auto& x : a) x = u(rng);
  for (auto& x : b) x = u(rng);
  const std::size_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  set_num_threads(threads);
  for (auto _ : state) {
    kernels::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
    benchmark::ClobberMemory();
  }
  set_num_threads(1);
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k) * double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["of_peak"] = benchmark::Counter(flops / peak_flops, benchmark::Counter::kIsRate);
}

void add(const shape& s, std::size_t threads = 1, bool real_time = false) {
  const std::string name = std::string("gemm/") + s.name + "/threads:" + std::to_string(threads);
  auto* b =
      benchmark::RegisterBenchmark(name.c_str(), [s, threads](benchmark::State& st) { run_gemm(st, s, threads); });
  b->Unit(benchmark::kMicrosecond);
  if (real_time) b->UseRealTime();
}

void register_all() {
  benchmark::RegisterBenchmark("fma_peak", fma_peak);
  for (const shape& s :
       {shape{"square_256", false, false, 256, 256, 256}, shape{"square_512", false, false, 512, 512, 512},
        shape{"square_1024", false, false, 1024, 1024, 1024}, shape{"square_512_TN", true, false, 512, 512, 512},
        shape{"square_512_NT", false, true, 512, 512, 512}, shape{"square_512_TT", true, true, 512, 512, 512}}) {
    add(s);
  }
  // The reference CNN (28x28 input): conv1 3x3 1->32, conv2 3x3 32->64 on 14x14, dense 3136->128.
  const shape train[] = {
      {"conv1_fwd_32x784x9", false, false, 32, 784, 9},
      {"conv1_dW_32x9x784", false, true, 32, 9, 784},
      {"conv2_fwd_64x196x288", false, false, 64, 196, 288},
      {"conv2_dW_64x288x196", false, true, 64, 288, 196},
      {"conv2_dX_288x196x64", true, false, 288, 196, 64},
      {"conv2_fwd_batch32_64x6272x288", false, false, 64, 6272, 288},
      {"dense_fwd_64x128x3136", false, true, 64, 128, 3136},
      {"dense_dW_128x3136x64", true, false, 128, 3136, 64},
      {"dense_dX_64x3136x128", false, false, 64, 3136, 128},
  };
  for (const shape& s : train) add(s);
  // Scaling: wall-clock time on 1 and 2 threads.
  add({"square_1024", false, false, 1024, 1024, 1024}, 1, true);
  add({"square_1024", false, false, 1024, 1024, 1024}, 2, true);
}

}  // namespace
XQUANT_SIMD_END

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  peak_flops = measure_peak();
  benchmark::AddCustomContext("arch", arch::name());
  benchmark::AddCustomContext("fp32_peak_GFLOP/s", std::to_string(peak_flops * 1e-9));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
