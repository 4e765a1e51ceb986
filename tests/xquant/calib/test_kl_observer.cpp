#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/kl_observer.hpp"

using namespace xquant;
using namespace calib_test;

using sym8 = scheme<signed_bits<8>, symmetric>;
using sym8n = scheme<narrow_bits<8>, symmetric>;
using act_u8 = scheme<unsigned_bits<8>, asymmetric>;
using w8_axis0 = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
using a8_axis1 = scheme<unsigned_bits<8>, asymmetric, per_axis<1>>;

static_assert(observer<kl_observer<act_u8>>);
static_assert(observer<kl_observer<w8_axis0>>);

namespace {

struct kl_choice {
  std::size_t bin = 0;  // the number of bins kept, m
  double divergence = std::numeric_limits<double>::infinity();
};

// MXNet's smoothing, written out again.
bool reference_smooth(std::vector<double>& d) {
  const double eps = 1e-4;
  double zeros = 0;
  for (const double v : d) zeros += v == 0 ? 1 : 0;
  const double nonzeros = static_cast<double>(d.size()) - zeros;
  if (nonzeros == 0) return false;
  for (double& v : d) v = v == 0 ? eps : v - eps * zeros / nonzeros;
  return std::all_of(d.begin(), d.end(), [](double v) { return v > 0; });
}

// The TensorRT entropy calibration loop, written independently of kl_observer: P and Q
// materialized, bin j in group floor(j nq / i), smoothing applied to the vectors, KL as
// sum p log p - p log q.
kl_choice reference_kl(std::span<const std::uint64_t> hist, std::size_t nq) {
  std::size_t used = hist.size();
  while (used > 0 && hist[used - 1] == 0) --used;
  kl_choice best;
  for (std::size_t i = nq; i <= used; ++i) {
    std::vector<double> p(hist.begin(), hist.begin() + static_cast<std::ptrdiff_t>(i));
    for (std::size_t j = i; j < hist.size(); ++j) p[i - 1] += static_cast<double>(hist[j]);
    std::vector<double> total(nq, 0.0), nonzero(nq, 0.0), q(i, 0.0);
    for (std::size_t j = 0; j < i; ++j) {
      total[j * nq / i] += static_cast<double>(hist[j]);
      nonzero[j * nq / i] += p[j] != 0 ? 1 : 0;
    }
    for (std::size_t j = 0; j < i; ++j) q[j] = p[j] != 0 ? total[j * nq / i] / nonzero[j * nq / i] : 0;
    double d = std::numeric_limits<double>::infinity();
    if (reference_smooth(p) && reference_smooth(q)) {
      double sp = 0, sq = 0;
      for (std::size_t j = 0; j < i; ++j) {
        sp += p[j];
        sq += q[j];
      }
      d = 0;
      for (std::size_t j = 0; j < i; ++j) {
        const double pj = p[j] / sp;
        d += pj * std::log(pj) - pj * std::log(q[j] / sq);
      }
    }
    if (d < best.divergence) best = {i, d};
  }
  return best;
}

// The threshold the reference gives for the observer's own histogram of channel c,
// after taking `zeros` exact zeros out of bin 0.
template <class Observer>
double reference_threshold(const Observer& obs, std::size_t c, std::size_t nq, std::uint64_t zeros = 0) {
  const histogram& h = obs.channel_histogram(c);
  const value_range seen = obs.observed_range(c);
  const double amax = std::max(std::fabs(seen.min), std::fabs(seen.max));
  std::vector<std::uint64_t> counts(h.counts().begin(), h.counts().end());
  counts[0] -= zeros;
  const kl_choice best = reference_kl(counts, nq);
  return std::min((static_cast<double>(best.bin) + 0.5) * h.bin_width(), amax);
}

}  // namespace

TEST_CASE("kl_observer: the candidate distributions of the GTC 2017 example") {
  // Migacz's slides: P = [1 0 2 3 5 3 1 7] merged into 2 levels gives [6, 16], expanded
  // over the nonzero bins of P as Q = [2 0 2 2 4 4 4 4]. Outliers (the 4 in bin 9) go to
  // P's last bin only.
  const std::vector<std::uint64_t> hist{1, 0, 2, 3, 5, 3, 1, 7, 0, 4};
  std::vector<double> p{1, 0, 2, 3, 5, 3, 1, 11};
  std::vector<double> q{2, 0, 2, 2, 4, 4, 4, 4};
  REQUIRE(reference_smooth(p));
  REQUIRE(reference_smooth(q));
  double sp = 0, sq = 0, expected = 0;
  for (std::size_t j = 0; j < 8; ++j) {
    sp += p[j];
    sq += q[j];
  }
  for (std::size_t j = 0; j < 8; ++j) expected += p[j] / sp * std::log((p[j] / sp) / (q[j] / sq));
  detail::entropy_workspace ws;
  CHECK(detail::entropy_divergence(hist, 8, 2, 4.0, ws) == doctest::Approx(expected).epsilon(1e-12));
  // detail::smooth_zero_bins is the same smoothing.
  std::vector<double> p2{1, 0, 2, 3, 5, 3, 1, 11};
  REQUIRE(detail::smooth_zero_bins(p2));
  CHECK(p2 == p);
  // Uneven groups (7 bins into 3 levels: sizes 3, 2, 2) and a last bin that holds only
  // outliers, whose group is empty in Q.
  const std::vector<std::uint64_t> uneven{4, 1, 0, 2, 2, 0, 0, 0, 3};
  std::vector<double> pu{4, 1, 0, 2, 2, 0, 3};
  std::vector<double> qu{2.5, 2.5, 0, 2, 2, 0, 0};
  REQUIRE(reference_smooth(pu));
  REQUIRE(reference_smooth(qu));
  double spu = 0, squ = 0, expected_u = 0;
  for (std::size_t j = 0; j < 7; ++j) {
    spu += pu[j];
    squ += qu[j];
  }
  for (std::size_t j = 0; j < 7; ++j) expected_u += pu[j] / spu * std::log((pu[j] / spu) / (qu[j] / squ));
  CHECK(detail::entropy_divergence(uneven, 7, 3, 3.0, ws) == doctest::Approx(expected_u).epsilon(1e-12));
  // All-zero Q (no counts below the threshold) cannot be smoothed: infinite divergence.
  const std::vector<std::uint64_t> empty_head{0, 0, 0, 9};
  CHECK(detail::entropy_divergence(empty_head, 2, 2, 9.0, ws) == std::numeric_limits<double>::infinity());
}

TEST_CASE("kl_observer: N(0,1), int8 symmetric: the reference search and a plausible threshold") {
  const std::vector<float> x = gaussian(100000, 0.0, 1.0, 80);
  kl_observer<sym8> obs;
  obs.observe(make_array(x));
  const histogram& h = obs.channel_histogram(0);
  CHECK(h.edge(0) == 0.0);  // a histogram of |x| starting at 0
  const float t = obs.threshold(0);
  const double ref = reference_threshold(obs, 0, 128);  // 128 levels, as TensorRT
  const value_range seen = obs.observed_range(0);
  MESSAGE("N(0,1) int8: KL threshold " << t << " (reference " << ref << ", max |x| "
                                       << std::max(-seen.min, seen.max) << ", bin width " << h.bin_width()
                                       << ")");
  CHECK(t == doctest::Approx(ref).epsilon(1e-6));
  CHECK(obs.ranges()[0] == value_range{-t, t});
  CHECK(t > 3.5f);
  CHECK(t < 4.5f);
  // narrow_bits<8> has the same 128 levels on the positive side.
  kl_observer<sym8n> narrow;
  narrow.observe(make_array(x));
  CHECK(narrow.threshold(0) == t);
}

TEST_CASE("kl_observer: the threshold scales with the data") {
  const std::vector<float> x = gaussian(50000, 0.0, 1.0, 81);
  kl_observer<sym8> one, scaled;
  one.observe(make_array(x));
  std::vector<float> y(x);
  for (float& v : y) v *= 8.0f;  // a power of two: the histogram scales exactly
  scaled.observe(make_array(y));
  CHECK(scaled.threshold(0) == 8.0f * one.threshold(0));
}

TEST_CASE("kl_observer: ReLU outputs with uint8: range (0, t) with 256 levels") {
  const std::vector<float> x = relu(gaussian(100000, 0.0, 1.0, 82));
  kl_observer<act_u8> obs;
  obs.observe(make_array(x));
  const float t = obs.threshold(0);
  const auto zeros = static_cast<std::uint64_t>(std::count(x.begin(), x.end(), 0.0f));
  CHECK(obs.zeros(0) == zeros);
  const double ref = reference_threshold(obs, 0, 256, zeros);
  MESSAGE("ReLU(N(0,1)) uint8: KL threshold " << t << " (reference " << ref
                                              << "; with the zeros left in bin 0 "
                                              << reference_threshold(obs, 0, 256) << ")");
  CHECK(t == doctest::Approx(ref).epsilon(1e-6));
  // The same band as N(0,1) itself: the zeros do not pull the threshold down.
  CHECK(t > 3.5f);
  CHECK(t < 4.5f);
  CHECK(obs.ranges()[0] == value_range{0.0f, t});
  CHECK(obs.params().zero_point[0] == 0);
}

TEST_CASE("kl_observer: asymmetric ranges on mixed-sign data are (max(min, -t), min(max, t))") {
  std::vector<float> x = gaussian(50000, 0.0, 1.0, 83);
  for (float& v : x) v = v < 0 ? 0.25f * v : v;  // a leaky-ReLU-like skew
  kl_observer<act_u8> obs;
  obs.observe(make_array(x));
  const float t = obs.threshold(0);
  const value_range seen = obs.observed_range(0);
  CHECK(obs.ranges()[0] == value_range{std::max(seen.min, -t), std::min(seen.max, t)});
  CHECK(t < seen.max);
}

TEST_CASE("kl_observer: outliers are clipped, uniform data is not") {
  SUBCASE("a Gaussian with a few huge outliers") {
    std::vector<float> x = gaussian(100000, 0.0, 1.0, 84);
    for (std::size_t i = 0; i < 5; ++i) x[i * 997] = (i % 2 ? -1.0f : 1.0f) * 100.0f;
    kl_observer<sym8> obs;
    obs.observe(make_array(x));
    const float t = obs.threshold(0);
    MESSAGE("N(0,1) + outliers at 100: KL threshold " << t << ", bin width "
                                                      << obs.channel_histogram(0).bin_width());
    // The Gaussian occupies fewer bins than there are levels, so the search keeps the
    // fewest bins allowed: t = (128 + 0.5) w.
    CHECK(t < 10.0f);
    CHECK(t == doctest::Approx(reference_threshold(obs, 0, 128)).epsilon(1e-6));
  }
  SUBCASE("uniform data keeps nearly its full range") {
    kl_observer<sym8> obs;
    obs.observe(make_array(uniform(100000, -1.0, 1.0, 85)));
    const float t = obs.threshold(0);
    MESSAGE("U(-1,1): KL threshold " << t);
    CHECK(t > 0.9f);
    CHECK(t == doctest::Approx(reference_threshold(obs, 0, 128)).epsilon(1e-6));
  }
}

TEST_CASE("kl_observer: per-axis channels of different scales") {
  const double scales[] = {0.5, 1.0, 2.0, 4.0};
  std::vector<float> values;
  for (unsigned c = 0; c < 4; ++c) {
    const std::vector<float> ch = gaussian(20000, 0.0, scales[c], 90 + c);
    values.insert(values.end(), ch.begin(), ch.end());
  }
  kl_observer<w8_axis0> obs;
  obs.observe(make_array(values, {4, 20000}));
  const std::vector<value_range> r = obs.ranges();
  REQUIRE(r.size() == 4);
  for (std::size_t c = 0; c < 4; ++c) {
    CAPTURE(c);
    CHECK(r[c].max == doctest::Approx(reference_threshold(obs, c, 128)).epsilon(1e-6));
    CHECK(r[c].max / scales[c] == doctest::Approx(r[1].max).epsilon(0.2));
  }
}

TEST_CASE("kl_observer: per-axis on a middle axis equals per-tensor on each channel") {
  std::vector<float> x = relu(gaussian(6000, 0.0, 1.0, 95));
  x[1] = 3.0f;  // channels with different maxima
  kl_observer<a8_axis1> per_axis;
  per_axis.observe(make_array(x, {2, 3, 1000}));
  const std::vector<value_range> r = per_axis.ranges();
  for (std::size_t c = 0; c < 3; ++c) {
    kl_observer<act_u8> one;
    one.observe(
        make_array(concat(slice(x, c * 1000, (c + 1) * 1000), slice(x, (3 + c) * 1000, (4 + c) * 1000))));
    CHECK(r[c] == one.ranges()[0]);
  }
}

TEST_CASE("kl_observer: several observe() calls equal one call on the concatenation") {
  const std::vector<float> a = gaussian(20000, 0.0, 1.0, 96);
  const std::vector<float> b = gaussian(20000, 0.0, 3.0, 97);
  kl_observer<sym8> split, whole;
  split.observe(make_array(a));
  split.observe(make_array(b));
  whole.observe(make_array(concat(b, a)));
  CHECK(split.channel_histogram(0) == whole.channel_histogram(0));
  CHECK(split.ranges() == whole.ranges());
}

TEST_CASE("kl_observer: degenerate cases") {
  SUBCASE("all zeros") {
    kl_observer<act_u8> obs;
    obs.observe(make_array(std::vector<float>(100, 0.0f)));
    CHECK(obs.ranges()[0] == value_range{0.0f, 0.0f});
    CHECK(obs.params().scale[0] == 1.0f);
  }
  SUBCASE("fewer occupied bins than levels: no clipping") {
    using sym16 = scheme<signed_bits<16>, symmetric>;
    kl_observer<sym16> obs;
    const std::vector<float> x = gaussian(1000, 0.0, 1.0, 98);
    obs.observe(make_array(x));
    const value_range seen = obs.observed_range(0);
    CHECK(obs.threshold(0) == std::max(-seen.min, seen.max));
  }
  SUBCASE("a few distinct values") {
    kl_observer<sym8> obs;
    obs.observe(make_array({-1.0f, 1.0f, 0.5f, 0.5f, 0.25f}));
    const float t = obs.threshold(0);
    CHECK(t > 0.0f);
    CHECK(t <= 1.0f);
    CHECK(t == doctest::Approx(reference_threshold(obs, 0, 128)).epsilon(1e-6));
  }
}

TEST_CASE("kl_observer: bad input") {
  CHECK_THROWS_AS(kl_observer<sym8>(1), value_error);
  kl_observer<w8_axis0> obs;
  CHECK(contains(message_of<value_error>([&] { (void)obs.params(); }), "no data observed"));
  CHECK_THROWS_AS(obs.ranges(), value_error);
  CHECK_THROWS_AS(obs.threshold(0), value_error);
  obs.observe(make_array({-1, 1, -2, 2}, {2, 2}));
  const std::vector<value_range> before = obs.ranges();
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.observe(make_array({std::nanf(""), 1, 2, 3}, {2, 2}));
                 }),
                 "kl_observer::observe: the tensor contains NaN at flat index 0"));
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.observe(make_array({0, 1, 2, std::numeric_limits<float>::infinity()}, {2, 2}));
                 }),
                 "+Inf at flat index 3 (element [1, 1]"));
  CHECK_THROWS_AS(obs.observe(array<float>(shape_t{0, 2})), value_error);
  CHECK(contains(message_of<shape_error>([&] {
                   obs.observe(make_array({1, 2, 3}, {3, 1}));
                 }),
                 "seen 2 channels"));
  CHECK_THROWS_AS(obs.threshold(5), shape_error);
  CHECK(obs.ranges() == before);
  obs.reset();
  CHECK_FALSE(obs.has_data());
}
