#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/im2col.hpp"
#include "xquant/kernels/reference/int8/im2col.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::im2col_geometry;
using int8::nhwc_shape;

namespace {

constexpr std::uint8_t sentinel = 0xA5;  // fills the columns past K, which must stay untouched

/// Reference and every arch on x, rows [first, first + count), row stride ld.
void compare(const std::vector<std::uint8_t>& x, const im2col_geometry& g, std::uint8_t zp, std::size_t first,
             std::size_t count, std::size_t ld) {
  std::vector<std::uint8_t> want(count * ld, sentinel);
  reference::int8::im2col_nhwc_rows(x.data(), g, zp, first, count, want.data(), ld);
  for (std::size_t r = 0; r < count; ++r) {
    for (std::size_t j = g.cols(); j < ld; ++j) REQUIRE(want[r * ld + j] == sentinel);
  }
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::vector<std::uint8_t> got(count * ld, sentinel);
    int8::im2col_nhwc_rows<Arch>(x.data(), g, zp, first, count, got.data(), ld);
    INFO("arch ", std::string(Arch::name()), ", in [", g.in.n, ", ", g.in.h, ", ", g.in.w, ", ", g.in.c, "], kernel ",
         g.kernel_h, "x", g.kernel_w, ", stride ", g.stride_h, "x", g.stride_w, ", pad ", g.pad_h, "x", g.pad_w,
         ", rows ", first, "+", count, ", ld ", ld);
    CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
  });
}

}  // namespace

TEST_CASE("im2col int8: hand-made 3x3 image, padding holds the zero point") {
  const std::vector<std::uint8_t> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // [1][3][3][1]
  const im2col_geometry g = int8::make_im2col_geometry({1, 3, 3, 1}, 3, 3, 1, 1, 1, 1);
  REQUIRE(g.rows() == 9);
  REQUIRE(g.cols() == 9);
  std::vector<std::uint8_t> m(g.rows() * 9);
  reference::int8::im2col_nhwc(x.data(), g, 100, m.data(), 9);
  const std::vector<std::uint8_t> corner = {100, 100, 100, 100, 1, 2, 100, 4, 5};  // output (0, 0)
  const std::vector<std::uint8_t> centre = {1, 2, 3, 4, 5, 6, 7, 8, 9};            // output (1, 1)
  const std::vector<std::uint8_t> last = {5, 6, 100, 8, 9, 100, 100, 100, 100};    // output (2, 2)
  CHECK(std::vector<std::uint8_t>(m.begin(), m.begin() + 9) == corner);
  CHECK(std::vector<std::uint8_t>(m.begin() + 36, m.begin() + 45) == centre);
  CHECK(std::vector<std::uint8_t>(m.begin() + 72, m.end()) == last);
  compare(x, g, 100, 0, g.rows(), 9);

  // Two channels, stride 2: output 2x2, (kh, kw, c) order.
  std::vector<std::uint8_t> x2(18);
  for (std::size_t i = 0; i < x2.size(); ++i) x2[i] = static_cast<std::uint8_t>(10 + i);
  const im2col_geometry g2 = int8::make_im2col_geometry({1, 3, 3, 2}, 3, 3, 2, 2, 1, 1);
  REQUIRE(g2.out_h == 2);
  REQUIRE(g2.out_w == 2);
  std::vector<std::uint8_t> m2(g2.rows() * g2.cols());
  reference::int8::im2col_nhwc(x2.data(), g2, 7, m2.data(), g2.cols());
  // output (1, 1) reads input rows 1..3 and columns 1..3: row 3 and column 3 are padding.
  const std::vector<std::uint8_t> want = {18, 19, 20, 21, 7, 7, 24, 25, 26, 27, 7, 7, 7, 7, 7, 7, 7, 7};
  CHECK(std::vector<std::uint8_t>(m2.begin() + 3 * 18, m2.end()) == want);
}

TEST_CASE("im2col int8: geometry and size validation") {
  const im2col_geometry g = int8::make_im2col_geometry({2, 7, 6, 5}, 3, 3, 2, 2, 1, 1);
  CHECK(g.out_h == 4);  // (7 + 2 - 3) / 2 + 1
  CHECK(g.out_w == 3);  // (6 + 2 - 3) / 2 + 1 (floor)
  CHECK(g.rows() == 24);
  CHECK(g.cols() == 45);
  CHECK(int8::im2col_size(g, 48) == 24 * 48);
  CHECK_THROWS_AS((void)int8::im2col_size(g, 44), shape_error);
  CHECK_THROWS_AS((void)int8::make_im2col_geometry({1, 2, 2, 1}, 5, 5, 1, 1, 1, 1), shape_error);
  CHECK_THROWS_AS((void)int8::make_im2col_geometry({1, 2, 2, 1}, 3, 3, 0, 1, 1, 1), shape_error);
  CHECK_THROWS_AS((void)int8::make_im2col_geometry({0, 2, 2, 1}, 1, 1, 1, 1, 0, 0), shape_error);
  CHECK_THROWS_AS((void)int8::make_im2col_geometry({1, 2, 2, 1}, 0, 1, 1, 1, 0, 0), shape_error);
}

TEST_CASE("im2col int8: every arch equals the reference on odd sizes") {
  int8_test::generator gen(3);
  struct window {
    std::size_t kh, kw, sh, sw, ph, pw;
  };
  const window windows[] = {{3, 3, 1, 1, 1, 1}, {3, 3, 2, 2, 1, 1}, {1, 1, 2, 2, 0, 0},
                            {5, 5, 1, 1, 2, 2}, {3, 1, 1, 2, 1, 0}, {2, 3, 3, 1, 0, 2}};
  for (std::size_t c : int8_test::odd_sizes()) {
    for (const auto& hw : int8_test::odd_spatial()) {
      for (const window& w : windows) {
        if (hw[0] + 2 * w.ph < w.kh || hw[1] + 2 * w.pw < w.kw) continue;
        const std::size_t batch = (c + hw[0]) % 2 ? 3 : 1;
        const im2col_geometry g =
            int8::make_im2col_geometry({batch, hw[0], hw[1], c}, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw);
        const std::vector<std::uint8_t> x = gen.bytes(g.in.size());
        const auto zp = static_cast<std::uint8_t>(gen.uniform(0, 255));
        compare(x, g, zp, 0, g.rows(), g.cols() + (c % 3 == 0 ? 5 : 0));
        if (g.rows() > 2) compare(x, g, zp, g.rows() / 3, g.rows() - g.rows() / 3 - 1, g.cols() + 1);
      }
    }
  }
}
