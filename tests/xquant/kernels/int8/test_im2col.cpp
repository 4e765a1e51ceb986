#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "xquant/kernels/reference/int8/im2col.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::im2col_geometry;

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
