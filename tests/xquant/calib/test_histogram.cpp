#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/histogram.hpp"

using namespace xquant;
using namespace calib_test;

namespace {

// Recounts `values` into h's current grid independently of histogram's own code
// (division by the power-of-two width is exact, so the bin index is too).
std::vector<std::uint64_t> recount(const histogram& h, const std::vector<float>& values) {
  std::vector<std::uint64_t> counts(h.bins(), 0);
  const double w = h.bin_width();
  for (const float v : values) {
    const double j = std::floor(static_cast<double>(v) / w) - h.edge(0) / w;
    if (!(j >= 0 && j < static_cast<double>(h.bins()))) return {};  // outside: cannot match
    ++counts[static_cast<std::size_t>(j)];
  }
  return counts;
}

std::vector<std::uint64_t> as_vector(std::span<const std::uint64_t> s) { return {s.begin(), s.end()}; }

std::size_t occupied_span(const histogram& h) {
  const auto c = h.counts();
  std::size_t first = 0;
  while (c[first] == 0) ++first;
  std::size_t last = c.size() - 1;
  while (c[last] == 0) --last;
  return last - first + 1;
}

}  // namespace

TEST_CASE("observer histogram: bins are aligned to a power-of-two width and count exactly") {
  histogram h(8);
  const std::vector<float> v{0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.9f};
  h.add(v);
  // [0, 3.9] needs 8 bins of width 0.5 (2^-1): floor(3.9 / 0.5) + 1 = 8.
  CHECK(h.exponent() == -1);
  CHECK(h.bin_width() == 0.5);
  CHECK(h.edge(0) == 0.0);
  CHECK(h.edge(8) == 4.0);
  CHECK(as_vector(h.counts()) == std::vector<std::uint64_t>{1, 1, 1, 1, 1, 0, 0, 1});
  CHECK(h.total() == 6);
  CHECK(h.covered_min() == 0.0);
  CHECK(h.covered_max() == doctest::Approx(3.9));

  // Growing to the left by whole bins: the width stays, the origin moves.
  h.add(std::vector<float>{-0.25f});
  CHECK(h.exponent() == 0);  // [-0.25, 3.9] spans 9 bins of width 0.5, so the width doubles
  CHECK(h.edge(0) == -1.0);
  CHECK(as_vector(h.counts()) == std::vector<std::uint64_t>{1, 2, 2, 1, 1, 0, 0, 0});
}

TEST_CASE("observer histogram: every value lands in the bin that contains it, after any growth") {
  histogram h(64);
  std::vector<float> all;
  // Batches of growing and shifting ranges, negative and positive.
  const double scales[] = {0.01, 1.0, 0.5, 30.0, 2.0, 1e4};
  for (unsigned b = 0; b < 6; ++b) {
    const std::vector<float> batch = uniform(500, -scales[b] * (b % 2 ? 0.2 : 1.0), scales[b], 10 + b);
    h.add(batch);
    all.insert(all.end(), batch.begin(), batch.end());
    CHECK(as_vector(h.counts()) == recount(h, all));
    CHECK(h.total() == all.size());
    // The data fills more than half of the bins: the width is the smallest power of two.
    CHECK(occupied_span(h) * 2 >= h.bins() - 2);
  }
}

TEST_CASE("observer histogram: batches give the same histogram as their concatenation, in any order") {
  const std::vector<float> a = gaussian(3000, 0.0, 1.0, 1);
  const std::vector<float> b = gaussian(2000, 3.0, 10.0, 2);
  const std::vector<float> c = uniform(1000, -0.01, 0.02, 3);
  histogram whole(2048);
  whole.add(concat(concat(a, b), c));
  histogram ab(2048), cba(2048), pieces(2048);
  ab.add(a);
  ab.add(b);
  ab.add(c);
  cba.add(c);
  cba.add(b);
  cba.add(a);
  const std::vector<float> all = concat(concat(c, a), b);
  for (std::size_t i = 0; i < all.size(); i += 777) pieces.add(slice(all, i, std::min(all.size(), i + 777)));
  CHECK(ab == whole);
  CHECK(cba == whole);
  CHECK(pieces == whole);
}

TEST_CASE("observer histogram: quantiles are within one bin of the sorted-data order statistic") {
  std::vector<float> v = gaussian(100003, 0.5, 2.0, 7);
  histogram h;
  h.add(v);
  std::sort(v.begin(), v.end());
  const double w = h.bin_width();
  for (const double q : {0.00005, 0.001, 0.1, 0.5, 0.9, 0.999, 0.99995}) {
    CAPTURE(q);
    // The ceil(q n)-th smallest value lies in the bin where the histogram CDF reaches q.
    const auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    CHECK(std::fabs(h.quantile(q) - static_cast<double>(v[k - 1])) <= w);
  }
  // The extremes are exact: the first and last bins are cut to the covered range.
  CHECK(h.quantile(0.0) == static_cast<double>(v.front()));
  CHECK(h.quantile(1.0) == static_cast<double>(v.back()));
}

TEST_CASE("observer histogram: occupied bins are cut to the covered range") {
  histogram h(16);
  h.add(std::vector<float>{0.3f, 0.7f, 2.9f});
  const std::vector<histogram_bin> bins = h.occupied_bins();
  REQUIRE(bins.size() == 3);
  CHECK(bins.front().lo == doctest::Approx(0.3));
  CHECK(bins.back().hi == doctest::Approx(2.9));
  double total = 0;
  for (const histogram_bin& b : bins) {
    CHECK(b.lo <= b.hi);
    total += b.count;
  }
  CHECK(total == 3);
}

TEST_CASE("observer histogram: degenerate and extreme ranges") {
  SUBCASE("constant data") {
    histogram h;
    h.add(std::vector<float>(100, 3.0f));
    CHECK(h.total() == 100);
    CHECK(h.quantile(0.0) == 3.0);
    CHECK(h.quantile(0.5) == 3.0);
    CHECK(h.quantile(1.0) == 3.0);
  }
  SUBCASE("zeros, then data of a very different scale (a shift of more than 63 bits)") {
    histogram h(32);
    std::vector<float> all(10, 0.0f);
    h.add(all);
    CHECK(h.exponent() == -160);
    const std::vector<float> big{-1e30f, 1e30f, 5.0f};
    h.add(big);
    all.insert(all.end(), big.begin(), big.end());
    CHECK(as_vector(h.counts()) == recount(h, all));
  }
  SUBCASE("the largest floats and subnormals") {
    histogram h(2048);
    const float big = std::numeric_limits<float>::max();
    const float tiny = std::numeric_limits<float>::denorm_min();
    const std::vector<float> v{-big, big, tiny, -tiny, 0.0f};
    h.add(v);
    CHECK(h.total() == 5);
    CHECK(as_vector(h.counts()) == recount(h, v));
    CHECK(h.quantile(1.0) == static_cast<double>(big));
    histogram small(2048);
    small.add(std::vector<float>{tiny, 2 * tiny, 3 * tiny});
    CHECK(as_vector(small.counts()) == recount(small, {tiny, 2 * tiny, 3 * tiny}));
  }
  SUBCASE("clear") {
    histogram h(16);
    h.add(std::vector<float>{1, 2, 3});
    h.clear();
    CHECK(h.empty());
    CHECK(h == histogram(16));
  }
}

TEST_CASE("observer histogram: bad input") {
  CHECK_THROWS_AS(histogram(1), value_error);
  CHECK_THROWS_AS(histogram(histogram::max_bins + 1), value_error);
  histogram h(16);
  CHECK_THROWS_AS(h.quantile(0.5), value_error);  // empty
  CHECK_NOTHROW(h.add(std::vector<float>{}));     // adding nothing is a no-op
  CHECK(contains(message_of<numeric_error>([&] {
                   h.add(std::vector<float>{1.0f, std::nanf("")});
                 }),
                 "NaN at flat index 1"));
  CHECK(h.empty());
  CHECK_THROWS_AS(h.cover(0, std::numeric_limits<double>::infinity()), numeric_error);
  CHECK_THROWS_AS(h.cover(0, 1e300), numeric_error);
  CHECK_THROWS_AS(h.cover(2, 1), value_error);
  h.add(std::vector<float>{1, 2});
  CHECK_THROWS_AS(h.quantile(1.5), value_error);
  CHECK_THROWS_AS(h.quantile(std::nan("")), value_error);
}
