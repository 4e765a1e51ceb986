// quantize_demo: post-training quantization of real Fashion-MNIST images.
//
// For each policy in `policies` (a compile-time list of schemes) it calibrates
// quantization parameters with min/max on the 1,000 calibration images (the first 1,000
// training images), quantizes the 10,000 test images into a quantized_tensor, dequantizes
// them and prints one table row: storage, scales, error statistics, fraction clipped and
// speed. It also checks the contract of quantize: every element inside the representable
// range comes back within scale/2.
//
// Usage: quantize_demo (no arguments; the counts are fixed by reference-models.md). The
// data directory is XQUANT_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist.
// Exit status: 0 if every check holds, 1 if one fails, 2 on an error, 77 (ctest's
// "skipped") when the data set is not installed.

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <xquant/xquant.hpp>

#include "common/fashion_mnist.hpp"

using namespace xquant;  // an example program: the tag names read better unqualified
namespace ex = xquant::examples;

namespace {

// A string literal usable as a template argument, so that a policy's name is part of its type.
template <std::size_t N>
struct fixed_string {
  char text[N]{};
  constexpr fixed_string(const char (&s)[N]) { std::copy_n(s, N, text); }  // implicit on purpose
};

// One table row. A dynamic policy takes its parameters from the tensor it quantizes,
// as dynamic quantization does at run time: per-image (axis 0) scales cannot be
// calibrated on other images.
template <fixed_string Name, class Scheme, bool Dynamic = false>
struct policy {
  static constexpr const char* name = Name.text;
  using scheme = Scheme;
  static constexpr bool dynamic = Dynamic;
};

template <class... Ts>
struct type_list {};

using policies = type_list<
    policy<"uint8 asym", scheme<unsigned_bits<8>, asymmetric>>,
    policy<"uint8 asym, half-away", scheme<unsigned_bits<8>, asymmetric, round_half_away>>,
    policy<"int8 sym", scheme<signed_bits<8>, symmetric>>,
    policy<"int8 narrow sym", scheme<narrow_bits<8>, symmetric>>,
    policy<"int8 sym, pow2 scale", scheme<signed_bits<8>, symmetric, power_of_two_scale>>,
    policy<"int8 asym, per row (ax 2)", scheme<signed_bits<8>, asymmetric, per_axis<2>>>,
    policy<"int8 asym, per image*", scheme<signed_bits<8>, asymmetric, per_axis<0>>, true>,
    policy<"int16 sym", scheme<signed_bits<16>, symmetric>>,
    policy<"uint4 asym (packed)", scheme<unsigned_bits<4>, asymmetric>>,
    policy<"int4 sym (packed)", scheme<signed_bits<4>, symmetric>>,
    policy<"uint2 asym (packed)", scheme<unsigned_bits<2>, asymmetric>>>;

// Calls f(flat index, channel) for every element of a row-major tensor of `shape`
// whose channels run along `axis` (-1: the whole tensor is one channel).
template <class F>
void for_each_element(const shape_t& shape, int axis, F&& f) {
  const axis_layout l = axis_layout::of(shape, axis);
  std::size_t i = 0;
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c)
      for (std::size_t k = 0; k < l.inner; ++k) f(i++, c);
}

/// Min/max calibration: one observed range per channel of the scheme (one if per tensor).
template <class Scheme>
quant_params calibrate(const array<float>& x) {
  std::vector<value_range> ranges(axis_layout::of(shape_of(x), Scheme::axis).channels);
  for_each_element(shape_of(x), Scheme::axis, [&](std::size_t i, std::size_t c) { ranges[c].include(x.data()[i]); });
  return choose_params<Scheme>(ranges);
}

struct error_stats {
  double max_abs = 0, sum_sq_err = 0, sum_sq = 0;
  double worst = 0;  ///< max of |error| / bound over the in-range elements; must be <= 1
  std::size_t clipped = 0;
};

template <class Scheme>
error_stats compare(const array<float>& x, const array<float>& back, const quant_params& p) {
  error_stats st;
  for_each_element(shape_of(x), p.axis, [&](std::size_t i, std::size_t c) {
    const double v = x.data()[i], s = p.scale[c], z = p.zero_point[c];
    const double err = std::abs(v - back.data()[i]);
    st.max_abs = std::max(st.max_abs, err);
    st.sum_sq_err += err * err;
    st.sum_sq += v * v;
    // Values within half a step of [qmin, qmax] round to a level; the rest saturate.
    if (v < s * (Scheme::qmin - z - 0.5) || v > s * (Scheme::qmax - z + 0.5)) {
      ++st.clipped;
      return;
    }
    // scale/2 from rounding, plus float32 rounding of x / s and of (q - z) * s.
    const double bound = s / 2 + FLT_EPSILON * (std::abs(v) + s);
    st.worst = std::max(st.worst, err / bound);
  });
  return st;
}

/// "7.843e-03" for one value, "min..max" for several.
template <class T>
std::string summary(const std::vector<T>& v, const char* format) {
  char lo[32], hi[32];
  const auto [min, max] = std::minmax_element(v.begin(), v.end());
  std::snprintf(lo, sizeof lo, format, static_cast<double>(*min));
  std::snprintf(hi, sizeof hi, format, static_cast<double>(*max));
  return *min == *max ? lo : std::string(lo) + ".." + hi;
}

constexpr const char* row_format = "%-26s %4s %8s %6s  %-20s %-9s %9s %9s %7s %8s %8s %6s %8s %8s\n";

template <class Policy>
bool run(const array<float>& calibration, const array<float>& test) {
  using S = typename Policy::scheme;
  using clock = std::chrono::steady_clock;
  const quant_params p = calibrate<S>(Policy::dynamic ? test : calibration);

  const auto t0 = clock::now();
  const auto q = quantized_tensor<S>::quantize(test, p);
  const auto t1 = clock::now();
  const array<float> back = q.dequantize();
  const auto t2 = clock::now();
  const error_stats st = compare<S>(test, back, p);

  const double fp32_bytes = 4.0 * static_cast<double>(test.size());
  const auto mb_per_s = [&](auto dt) { return fp32_bytes / 1e6 / std::chrono::duration<double>(dt).count(); };
  const bool ok = st.worst <= 1.0;
  auto num = [](const char* format, double v) {
    char text[32];
    std::snprintf(text, sizeof text, format, v);
    return std::string(text);
  };
  std::printf(row_format, Policy::name, std::to_string(S::bits).c_str(),
              num("%.2f", static_cast<double>(q.storage_bytes()) / 1e6).c_str(),
              num("%.1fx", fp32_bytes / static_cast<double>(q.storage_bytes())).c_str(),
              summary(p.scale, "%.3e").c_str(), summary(p.zero_point, "%.0f").c_str(),
              num("%.3e", st.max_abs).c_str(),
              num("%.3e", std::sqrt(st.sum_sq_err / static_cast<double>(test.size()))).c_str(),
              num("%.2f", 10 * std::log10(st.sum_sq / st.sum_sq_err)).c_str(),
              num("%.4f%%", 100.0 * static_cast<double>(st.clipped) / static_cast<double>(test.size())).c_str(),
              num("%.4f", st.worst).c_str(), ok ? "ok" : "FAIL", num("%.0f", mb_per_s(t1 - t0)).c_str(),
              num("%.0f", mb_per_s(t2 - t1)).c_str());
  return ok;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc > 1) {
    const bool help = std::string(argv[1]) == "--help";
    std::fprintf(help ? stdout : stderr, "usage: quantize_demo   (no arguments; data from "
                 "$XQUANT_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist)\n");
    return help ? 0 : 2;
  }
  const std::string dir = ex::default_fashion_mnist_dir();
  for (ex::split s : {ex::split::train, ex::split::test}) {
    const auto [images, labels] = ex::fashion_mnist_files(dir, s);
    if (!std::filesystem::exists(images) || !std::filesystem::exists(labels)) {
      std::fprintf(stderr, "quantize_demo: Fashion-MNIST not found in %s (apt install dataset-fashion-mnist "
                   "or set XQUANT_FASHION_MNIST_DIR); skipped\n", dir.c_str());
      return 77;
    }
  }
  // reference-models.md: calibrate on the first 1,000 training images, test on all 10,000.
  const ex::dataset calibration = ex::load_fashion_mnist(dir, ex::split::train, 1000);
  const ex::dataset test = ex::load_fashion_mnist(dir, ex::split::test);
  std::printf("Fashion-MNIST from %s\ncalibration: %zu training images, range [%.4f, %.4f]\n"
              "test: %zu images = %zu values, %.2f MB as fp32\n\n",
              dir.c_str(), calibration.size(), static_cast<double>(xt::amin(calibration.images)()),
              static_cast<double>(xt::amax(calibration.images)()), test.size(), test.images.size(),
              4e-6 * static_cast<double>(test.images.size()));

  std::printf(row_format, "policy", "bits", "MB", "vs f32", "scale", "zero pt", "max|err|", "RMSE", "SQNR dB",
              "clipped", "err/bnd", "check", "Q MB/s", "DQ MB/s");
  std::printf("%s\n", std::string(150, '-').c_str());
  bool ok = true;
  // The fold runs the policies in list order; each instantiates run<> for its scheme.
  [&]<class... P>(type_list<P...>) { ((ok = run<P>(calibration.images, test.images) && ok), ...); }(policies{});

  std::printf("\n* dynamic: per-image parameters come from the test images themselves.\n"
              "err/bnd: max over in-range elements of |error| / (scale/2 + float32 rounding); must be <= 1.\n"
              "MB/s: fp32 megabytes per second, quantized_tensor::quantize and dequantize, one thread.\n"
              "check: %s\n", ok ? "all policies keep in-range errors within scale/2" : "FAILED");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "quantize_demo: %s\n", e.what());
  return 2;
}
