#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/conv.hpp"
#include "xquant/kernels/reference/int8/conv.hpp"
#include "xquant/kernels/requant_args.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::im2col_geometry;

namespace {

using int8_test::sentinel;

/// One convolution with random data: the input ends right after its last byte and the
/// output is followed by a sentinel (ASan and the check see reads and writes past them).
struct int8_conv_case {
  im2col_geometry g;
  std::size_t n;
  std::uint8_t zp;
  std::vector<std::uint8_t> x;
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> bias;
  requant_channel_params rq;
  int8::packed_weights packed;

  int8_conv_case(const im2col_geometry& geometry, std::size_t channels, bool per_channel, unsigned seed)
      : g(geometry), n(channels) {
    int8_test::generator gen(seed);
    zp = static_cast<std::uint8_t>(gen.uniform(0, 255));
    x = gen.bytes(g.in.size());
    w = gen.weights(n * g.cols());
    bias.resize(n);
    for (auto& b : bias) b = gen.uniform(-(1 << 18), 1 << 18);
    // Scales near 100 / max|acc| keep most outputs off the clamp, so a wrong sum shows.
    const double max_acc = 32640.0 * double(g.cols()) + double(1 << 18);
    std::vector<float> scales(n, static_cast<float>(100.0 / max_acc));
    if (per_channel) {
      for (auto& s : scales) s = static_cast<float>(100.0 / max_acc * std::exp2(gen.uniform_real(-3, 6)));
    }
    rq = make_requant_channel_params<std::uint8_t>(scales, gen.uniform(0, 255), 0, 255);
    packed = int8::pack_conv_weights(w.data(), n, g);
  }

  std::string name() const {
    return "in [" + std::to_string(g.in.n) + ", " + std::to_string(g.in.h) + ", " + std::to_string(g.in.w) + ", " +
           std::to_string(g.in.c) + "] kernel " + std::to_string(g.kernel_h) + "x" + std::to_string(g.kernel_w) +
           " stride " + std::to_string(g.stride_h) + "x" + std::to_string(g.stride_w) + " pad " +
           std::to_string(g.pad_h) + "x" + std::to_string(g.pad_w) + " N " + std::to_string(n);
  }

  std::vector<std::uint8_t> expected() const {
    std::vector<std::uint8_t> out(g.rows() * n + 1, sentinel);
    reference::int8::conv_nhwc(x.data(), g, zp, w.data(), n, bias.data(), rq.args(), out.data());
    return out;
  }

  template <class Arch>
  std::vector<std::uint8_t> run(int8::gemm_path path) const {
    std::vector<std::uint8_t> out(g.rows() * n + 1, sentinel);
    std::vector<std::uint8_t> scratch(int8::implicit_conv_scratch(g));
    int8::check_conv_args(x.data(), g, packed, rq.args(), out.data(), scratch.data());
    int8::conv_nhwc<Arch>(path, x.data(), g, zp, packed, bias.data(), rq.args(), out.data(),
                          scratch.empty() ? nullptr : scratch.data());
    return out;
  }
};

/// The generic path of every runnable arch and each VNNI path this machine runs must equal
/// the reference bit for bit; returns how many paths ran.
int check_all_paths(const int8_conv_case& c) {
  const std::vector<std::uint8_t> want = c.expected();
  int ran = 0;
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    const std::vector<std::uint8_t> got = c.run<Arch>(int8::gemm_path::generic);
    CHECK_MESSAGE(got == want, "generic<", Arch::name(), "> ", c.name(), ": ", int8_test::first_difference(want, got));
    ++ran;
  });
  for (int8::gemm_path path : {int8::gemm_path::avx_vnni, int8::gemm_path::avx512_vnni}) {
    if (!int8::runs_here(path)) continue;
    const std::vector<std::uint8_t> got = c.run<simd::default_arch>(path);
    CHECK_MESSAGE(got == want, int8::path_name(path), " ", c.name(), ": ", int8_test::first_difference(want, got));
    ++ran;
  }
  return ran;
}

}  // namespace

TEST_CASE("int8 conv: widened kernel rows, scratch size and packed weights") {
  const auto g = int8::make_im2col_geometry({2, 5, 6, 4}, 3, 3, 1, 1, 1, 1);
  CHECK(int8::read_kernel_w(g) == 3);
  CHECK(int8::implicit_conv_scratch(g) == 7 * 8 * 4);  // one padded image
  // One channel: kernel rows of 3 bytes widen to 4 taps, the frame gets one more column.
  const auto g1 = int8::make_im2col_geometry({1, 5, 5, 1}, 3, 3, 1, 1, 1, 1);
  CHECK(int8::read_kernel_w(g1) == 4);
  CHECK(int8::implicit_conv_scratch(g1) == 7 * 8);
  CHECK(int8::read_kernel_w(int8::make_im2col_geometry({1, 5, 5, 2}, 3, 3, 1, 1, 1, 1)) == 4);
  CHECK(int8::read_kernel_w(int8::make_im2col_geometry({1, 5, 5, 3}, 3, 3, 1, 1, 1, 1)) == 4);
  CHECK(int8::read_kernel_w(int8::make_im2col_geometry({1, 9, 9, 5}, 5, 5, 1, 1, 2, 2)) == 8);
  // Unpadded and not widened: the input is read in place.
  CHECK(int8::implicit_conv_scratch(int8::make_im2col_geometry({1, 5, 5, 8}, 1, 1, 2, 2, 0, 0)) == 0);
  CHECK(int8::implicit_conv_scratch(int8::make_im2col_geometry({1, 5, 5, 1}, 3, 3, 1, 1, 0, 0)) == 5 * 6);
  // The widened weights: each kernel row's taps, then a zero tap; column sums unchanged.
  std::vector<std::int8_t> w(2 * 9);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<std::int8_t>(i + 1);
  const int8::packed_weights p = int8::pack_conv_weights(w.data(), 2, g1);
  REQUIRE(p.k() == 12);
  CHECK(p.column_sums()[0] == 45);
  CHECK(p.column_sums()[1] == 126);
  // Group 0 of column 1 (panel width 16): taps 10, 11, 12, then the zero tap.
  const std::int8_t* group0 = p.panel(0) + 1 * int8::k_group;
  CHECK(std::vector<int>(group0, group0 + 4) == std::vector<int>{10, 11, 12, 0});
}

TEST_CASE("int8 conv: check_conv_args rejects weights packed for another window") {
  const auto g4 = int8::make_im2col_geometry({1, 5, 5, 4}, 3, 3, 1, 1, 1, 1);
  const int8_conv_case ok(g4, 8, true, 2);
  std::vector<std::uint8_t> out(g4.rows() * 8), scratch(int8::implicit_conv_scratch(g4));
  CHECK_NOTHROW(int8::check_conv_args(ok.x.data(), g4, ok.packed, ok.rq.args(), out.data(), scratch.data()));
  const auto g8 = int8::make_im2col_geometry({1, 5, 5, 8}, 3, 3, 1, 1, 1, 1);
  CHECK_THROWS_WITH_AS(int8::check_conv_args(ok.x.data(), g8, ok.packed, ok.rq.args(), out.data(), scratch.data()),
                       doctest::Contains("weights of K = 36 for a window that reads 72"), shape_error);
  // Unwidened weights for a one-channel window (K = 9, the window reads 12).
  const auto g1 = int8::make_im2col_geometry({1, 5, 5, 1}, 3, 3, 1, 1, 1, 1);
  const std::vector<std::int8_t> w(8 * 9, 1);
  const int8::packed_weights plain = int8::pack_weights(w.data(), 8, 9);
  CHECK_THROWS_WITH_AS(int8::check_conv_args(ok.x.data(), g1, plain, ok.rq.args(), out.data(), scratch.data()),
                       doctest::Contains("pack_conv_weights"), shape_error);
  CHECK_THROWS_AS(int8::check_conv_args(ok.x.data(), g4, ok.packed, ok.rq.args(), out.data(), nullptr), value_error);
  CHECK_THROWS_AS(int8::check_conv_args(nullptr, g4, ok.packed, ok.rq.args(), out.data(), scratch.data()),
                  value_error);
}

TEST_CASE("int8 conv: every path equals im2col + the reference GEMM on odd sizes") {
  // Channels 1-3 (widened kernel rows) and multiples of 4 around the vector widths, outputs
  // over the odd sizes, 3x3 "same" windows at strides 1 and 2, 1x1 stride-2 shortcuts, and
  // uneven windows.
  unsigned seed = 100;
  int cases = 0;
  const std::vector<std::array<std::size_t, 2>> spatial = int8_test::odd_spatial();
  const std::vector<std::size_t> outputs = int8_test::odd_sizes();
  for (std::size_t c : {1, 2, 3, 4, 8, 12, 16, 32, 64}) {
    for (std::size_t s = 0; s < spatial.size(); s += 3) {
      const auto [h, w] = spatial[s];
      for (std::size_t stride : {1, 2}) {
        const std::size_t n = outputs[(seed * 7) % outputs.size()];
        const auto g = int8::make_im2col_geometry({2, h, w, c}, 3, 3, stride, stride, 1, 1);
        CHECK(check_all_paths(int8_conv_case(g, n, seed % 2 == 0, seed)) >= 1);
        ++seed;
        ++cases;
      }
      const auto shortcut = int8::make_im2col_geometry({1, h, w, c}, 1, 1, 2, 2, 0, 0);
      CHECK(check_all_paths(int8_conv_case(shortcut, outputs[seed % outputs.size()], true, seed)) >= 1);
      ++seed;
      ++cases;
    }
  }
  // Uneven windows, strides and paddings, widened or not.
  const std::vector<im2col_geometry> uneven = {
      int8::make_im2col_geometry({1, 9, 7, 4}, 2, 3, 1, 2, 0, 1), int8::make_im2col_geometry({2, 6, 10, 1}, 3, 4, 2, 1, 1, 2),
      int8::make_im2col_geometry({1, 5, 5, 3}, 5, 4, 1, 1, 2, 2), int8::make_im2col_geometry({1, 3, 3, 20}, 3, 3, 1, 1, 0, 0),
      int8::make_im2col_geometry({1, 1, 1, 8}, 3, 3, 1, 1, 1, 1), int8::make_im2col_geometry({2, 7, 5, 3}, 3, 2, 2, 1, 1, 0),
      int8::make_im2col_geometry({1, 8, 8, 5}, 5, 5, 2, 2, 2, 2), int8::make_im2col_geometry({1, 4, 9, 1}, 1, 3, 1, 2, 0, 1)};
  for (const auto& g : uneven) {
    for (std::size_t n : {1, 17, 65}) CHECK(check_all_paths(int8_conv_case(g, n, true, seed++)) >= 1);
    cases += 3;
  }
  MESSAGE(cases, " convolutions");
}

TEST_CASE("int8 conv: 7-row tiles on output rows that are multiples of 7 equal the reference") {
  // The VNNI kernel's tile height follows the output width (dpbusd_kernel::rows_for): 7
  // where 7 divides it, including 4-vector tiles once K >= 256, else 6; and there its
  // tiles are 1 vector wide up to N = 64 (tile_vectors). Widths 7-28 with 1-4 vectors (N up
  // to 64, then a second panel), shallow and deep K, stride 1 and 2.
#if XQUANT_INT8_AVX512_VNNI
  using zmm = int8::gemm_detail::dpbusd_kernel<int8::gemm_detail::zmm_dpbusd>;
  CHECK(zmm::rows_for(1, 28, 144) == 7);
  CHECK(zmm::rows_for(4, 7, 576) == 7);
  CHECK(zmm::rows_for(4, 28, 16) == 6);
  CHECK(zmm::rows_for(2, 0, 144) == 6);
  CHECK(zmm::rows_for(2, 12, 144) == 6);
  // One vector per column tile where 7 divides the output width and N fits one panel.
  CHECK(zmm::tile_vectors(28, 64) == 1);
  CHECK(zmm::tile_vectors(7, 16) == 1);
  CHECK(zmm::tile_vectors(28, 80) == 4);
  CHECK(zmm::tile_vectors(12, 32) == 4);
  CHECK(zmm::tile_vectors(0, 16) == 4);
#endif
  unsigned seed = 700;
  for (std::size_t w : {7, 14, 21, 28}) {
    for (std::size_t c : {1, 16, 32, 64}) {
      for (std::size_t n : {16, 33, 48, 64, 80}) {
        const std::size_t stride = seed % 3 == 0 ? 2 : 1;
        const auto g = int8::make_im2col_geometry({2, 2 * w / 7 * stride, w * stride, c}, 3, 3, stride, stride, 1, 1);
        CHECK(check_all_paths(int8_conv_case(g, n, seed % 2 == 0, seed)) >= 1);
        ++seed;
      }
    }
  }
}

TEST_CASE("int8 conv: extreme inputs and weights do not saturate") {
  // A = 255 everywhere with W = -128: the largest-magnitude sums the paths can see.
  const auto g = int8::make_im2col_geometry({1, 7, 7, 64}, 3, 3, 1, 1, 1, 1);
  int8_conv_case c(g, 32, true, 7);
  std::fill(c.x.begin(), c.x.end(), std::uint8_t{255});
  std::fill(c.w.begin(), c.w.end(), std::int8_t{-128});
  c.zp = 255;
  c.packed = int8::pack_conv_weights(c.w.data(), c.n, g);
  CHECK(check_all_paths(c) >= 1);
}
