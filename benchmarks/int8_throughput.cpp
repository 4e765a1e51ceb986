// xquant side of the int8 inference benchmark (driven by int8_throughput.py, which runs the
// PyTorch side in the same run). Builds one reference model with seeded random weights and
// BatchNorm statistics, converts it as examples/convert does for PTQ (w8a8, weights per
// output channel; calibration = one training-mode forward with BN frozen on random
// Fashion-MNIST-shaped images) and times, after a warm-up:
//   - batch 1 latency: the median of many single-image calls, in ms per image;
//   - batch B throughput: the median over repeats of one B-image call, in images/s;
// for (a) the int8 runtime (runtime::int8_model) and (b) the FP32 evaluation forward of the
// same network without quantization (Q = no_quant, eval mode, no gradients). The int8 and
// FP32 calls alternate, so that load on the shared machine hits both alike. Prints one
// JSON line with the medians of wall-clock time (std::chrono::steady_clock) and of process
// CPU time (robust to preemption on a loaded machine; see timed()).
//
//   int8_throughput --model cnn|mobilenet|resnet [--threads 1] [--batch 256] [--repeats 10]
//                   [--latency-calls 200] [--warmup 3] [--only all|int8|fp32] [--batches 1,B|1|B]
//
// --only and --batches restrict what runs (for profiling one case with perf record).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <tuple>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/models.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/runtime/graph.hpp"
#include "xquant/runtime/int8_model.hpp"

using namespace xquant;
using namespace xquant::examples;

namespace {

constexpr std::size_t image_pixels = 28 * 28;

/// Images whose values look like normalised Fashion-MNIST: uniform pixels in [0, 1],
/// then (p - 0.2860) / 0.3530.
array<float> random_images(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
  array<float> x(shape_t{n, 1, 28, 28});
  for (auto& v : x) v = (pixel(rng) - 0.2860f) / 0.3530f;
  return x;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Random BatchNorm state (gamma, beta, running mean and variance) near that of a trained
/// network, so that activations neither explode nor vanish (denormals would slow FP32).
void randomize_batch_norm(nn::module& model, std::mt19937& rng) {
  std::uniform_real_distribution<float> around_one(0.5f, 1.5f);
  std::normal_distribution<float> small(0.0f, 0.1f);
  for (auto& p : model.parameters()) {
    if (ends_with(p.name, "bn.weight")) for (auto& v : p.var->value()) v = around_one(rng);
    if (ends_with(p.name, "bn.bias")) for (auto& v : p.var->value()) v = small(rng);
  }
  for (auto& b : model.buffers()) {
    if (ends_with(b.name, "running_mean")) for (auto& v : *b.value) v = small(rng);
    if (ends_with(b.name, "running_var")) for (auto& v : *b.value) v = around_one(rng);
  }
}

/// PTQ calibration as in examples/convert.cpp: training mode with BN frozen, no gradients,
/// one forward so every observer records min/max; then observers frozen and eval mode.
void calibrate_min_max(nn::module& model, const array<float>& images) {
  autograd::no_grad_guard no_grad;
  model.train();
  nn::freeze_bn(model, true);
  (void)model(nn::variable(images));
  nn::freeze_observers(model, true);
  model.eval();
}

/// Wall-clock and process CPU seconds of one call. On the shared machine a call of several
/// milliseconds is often preempted, which inflates its wall time but not its CPU time; with
/// one thread the CPU time is the time the work would take on an idle core (with N threads
/// it is the sum over threads). CPU time comes from POSIX clock_gettime, which unlike
/// std::clock() has nanosecond resolution (a batch-1 call takes a few microseconds).
struct seconds {
  double wall = 0, cpu = 0;
};

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

template <class F>
seconds timed(F&& f) {
  const auto wall = std::chrono::steady_clock::now();
  const double cpu = process_cpu_seconds();
  f();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count(),
          process_cpu_seconds() - cpu};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

/// Medians of the wall and CPU times of a series of calls.
class series {
 public:
  void add(seconds s) {
    wall_.push_back(s.wall);
    cpu_.push_back(s.cpu);
  }
  seconds median_seconds() const { return {median(wall_), median(cpu_)}; }

 private:
  std::vector<double> wall_, cpu_;
};

struct options {
  std::string model, only;
  std::size_t threads = 1, batch = 256, repeats = 10, latency_calls = 200, warmup = 3;
  bool batch1 = true, batch_b = true;
};

/// Times `int8` and `fp32` alternately, `warmup` untimed rounds then `calls` timed ones; a
/// disabled side (nullptr) is skipped and reports zeros.
template <class A, class B>
std::pair<seconds, seconds> alternate(std::size_t warmup, std::size_t calls, A* int8, B* fp32) {
  series a, b;
  for (std::size_t i = 0; i < warmup + calls; ++i) {
    const seconds ta = int8 ? timed(*int8) : seconds{};
    const seconds tb = fp32 ? timed(*fp32) : seconds{};
    if (i < warmup) continue;
    a.add(ta);
    b.add(tb);
  }
  return {a.median_seconds(), b.median_seconds()};
}

double per_second(double images, double s) { return s > 0 ? images / s : 0.0; }

/// Share of rows where two [n][classes] logit tables pick the same class: a guard that the
/// int8 model computes the network the FP32 one does (a weak one: a random network gives
/// most images the same class).
double top1_agreement(const float* a, const float* b, std::size_t n, std::size_t classes) {
  std::size_t same = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float *ra = a + i * classes, *rb = b + i * classes;
    same += std::max_element(ra, ra + classes) - ra == std::max_element(rb, rb + classes) - rb;
  }
  return static_cast<double>(same) / static_cast<double>(n);
}

/// The FP32 model and its int8 conversion (for batch 1 and for the large batch).
struct networks {
  std::unique_ptr<nn::module> fp32;
  std::unique_ptr<runtime::int8_model> int8_single, int8_batch;
};

networks make_networks(const options& o, std::mt19937& rng) {
  networks net;
  net.fp32 = make_model(o.model, 0);
  randomize_batch_norm(*net.fp32, rng);
  net.fp32->eval();
  auto qat = make_model<w8a8, w8a8>(o.model, 0);
  (void)copy_state(*net.fp32, *qat);  // the same network; only the quantizer buffers are new
  calibrate_min_max(*qat, random_images(o.batch, rng));
  const runtime::graph g = runtime::build_graph(*qat, array<float>(shape_t{1, 1, 28, 28}, 0.0f));
  net.int8_single = std::make_unique<runtime::int8_model>(g, 1);
  net.int8_batch = std::make_unique<runtime::int8_model>(g, o.batch);
  return net;
}

struct results {
  seconds int8_batch, fp32_batch, int8_one, fp32_one;
  double agreement = 0, checksum = 0;
};

void print_json(const options& o, const results& r) {
  const auto n = static_cast<double>(o.batch);
  std::printf("{\"framework\": \"xquant\", \"model\": \"%s\", \"threads\": %zu, \"batch\": %zu, "
              "\"int8_batch1_ms\": %.4f, \"fp32_batch1_ms\": %.4f, \"int8_images_per_s\": %.1f, "
              "\"fp32_images_per_s\": %.1f, \"int8_batch1_cpu_ms\": %.4f, \"fp32_batch1_cpu_ms\": %.4f, "
              "\"int8_images_per_cpu_s\": %.1f, \"fp32_images_per_cpu_s\": %.1f, \"top1_agreement\": %.3f, "
              "\"checksum\": %g}\n",
              o.model.c_str(), o.threads, o.batch, 1e3 * r.int8_one.wall, 1e3 * r.fp32_one.wall,
              per_second(n, r.int8_batch.wall), per_second(n, r.fp32_batch.wall), 1e3 * r.int8_one.cpu,
              1e3 * r.fp32_one.cpu, per_second(n, r.int8_batch.cpu), per_second(n, r.fp32_batch.cpu), r.agreement,
              r.checksum);
}

int run(const options& o) {
  set_num_threads(o.threads);
  std::mt19937 rng(0);
  networks net = make_networks(o, rng);
  const array<float> one = random_images(1, rng), many = random_images(o.batch, rng);
  std::vector<float> logits(o.batch * net.int8_batch->output_size());
  float sink = 0;  // a logit of every call, printed, so that no call can be optimised away
  auto int8_call = [&](runtime::int8_model& m, const array<float>& x) {
    const std::size_t n = x.shape()[0];
    m.run(std::span<const float>(x.data(), n * image_pixels), n, std::span<float>(logits.data(), n * m.output_size()));
    sink += logits[0];
  };
  auto fp32_call = [&](const array<float>& x) {
    autograd::no_grad_guard no_grad;
    sink += (*net.fp32)(nn::variable(x)).value().data()[0];
  };
  auto int8_many = [&] { int8_call(*net.int8_batch, many); };
  auto fp32_many = [&] { fp32_call(many); };
  auto int8_one = [&] { int8_call(*net.int8_single, one); };
  auto fp32_one = [&] { fp32_call(one); };
  const bool do_int8 = o.only != "fp32", do_fp32 = o.only != "int8";

  results r;
  int8_many();
  {
    autograd::no_grad_guard no_grad;
    const nn::variable y = (*net.fp32)(nn::variable(many));
    r.agreement = top1_agreement(logits.data(), y.value().data(), o.batch, net.int8_batch->output_size());
  }
  if (o.batch_b) {
    std::tie(r.int8_batch, r.fp32_batch) =
        alternate(o.warmup, o.repeats, do_int8 ? &int8_many : nullptr, do_fp32 ? &fp32_many : nullptr);
  }
  if (o.batch1) {
    std::tie(r.int8_one, r.fp32_one) = alternate(std::max<std::size_t>(o.warmup, 10), o.latency_calls,
                                                 do_int8 ? &int8_one : nullptr, do_fp32 ? &fp32_one : nullptr);
  }
  r.checksum = sink;
  print_json(o, r);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  args a(argc, argv, "int8_throughput --model cnn|mobilenet|resnet [--threads N] [--batch N] [--repeats N] "
                     "[--latency-calls N] [--warmup N] [--only all|int8|fp32] [--batches 1,B|1|B]");
  options o;
  o.model = a.get("model", std::string("cnn"));
  o.threads = a.get("threads", o.threads);
  o.batch = a.get("batch", o.batch);
  o.repeats = a.get("repeats", o.repeats);
  o.latency_calls = a.get("latency-calls", o.latency_calls);
  o.warmup = a.get("warmup", o.warmup);
  o.only = a.get("only", std::string("all"));
  const std::string batches = a.get("batches", std::string("1,B"));
  a.finish();
  check<value_error>(o.only == "all" || o.only == "int8" || o.only == "fp32", "unknown --only '", o.only,
                     "' (all, int8, fp32)");
  check<value_error>(batches == "1,B" || batches == "1" || batches == "B", "unknown --batches '", batches,
                     "' (1,B, 1, B)");
  check<value_error>(o.batch > 0 && o.repeats > 0 && o.latency_calls > 0, "--batch, --repeats and "
                     "--latency-calls must be positive");
  o.batch1 = batches != "B";
  o.batch_b = batches != "1";
  return run(o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "int8_throughput: %s\n", e.what());
  return 1;
}
