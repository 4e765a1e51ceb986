#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "checkpoint_test_util.hpp"
#include "xquant/io/export_header.hpp"
#include "xquant/runtime/int8_model.hpp"
// The committed output of export_cpp_header(tiny_graph(), "tiny") (checked below): this
// include also checks that generated code compiles warning-free in the test build.
#include "../../../examples/firmware/tiny_model.hpp"

using namespace xquant;
using runtime::activation;
using runtime::activation_grid;

namespace {

const char* const golden_path = XQUANT_SOURCE_DIR "/examples/firmware/tiny_model.hpp";

std::uint32_t next_random(std::uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  return state >> 8;
}

activation_grid grid(float scale, std::int32_t zp, std::int32_t lo = 0, std::int32_t hi = 255) {
  activation_grid g;
  g.scale = scale;
  g.zero_point = zp;
  g.qmin = lo;
  g.qmax = hi;
  return g;
}

/// A weighted layer with pseudo-random int8 weights, per-channel scales and biases.
nn::weighted_spec weighted(bool linear, std::size_t out, std::size_t in, std::size_t kernel, std::size_t groups,
                           activation act, std::uint32_t seed) {
  nn::weighted_spec s;
  s.is_linear = linear;
  s.out = out;
  s.in = in;
  s.kernel = kernel;
  s.padding = kernel / 2;
  s.groups = groups;
  s.act = act;
  s.weight_qmin = -127;
  s.weight_qmax = 127;
  s.weight.resize(out * (in / groups) * kernel * kernel);
  for (auto& w : s.weight) w = static_cast<std::int32_t>(next_random(seed) % 255) - 127;
  for (std::size_t o = 0; o < out; ++o) {
    s.weight_scale.push_back(0.003f * static_cast<float>(1 + o % 3));
    s.bias.push_back(0.1f * (static_cast<float>(o) - 1.5f));
  }
  return s;
}

struct tiny_builder {
  runtime::graph g;
  std::size_t value(std::size_t h, std::size_t w, std::size_t c, activation_grid q) {
    runtime::value_info v;
    v.h = h;
    v.w = w;
    v.c = c;
    v.grid = q;
    g.values.push_back(v);
    return g.values.size() - 1;
  }
  std::size_t flat(std::size_t c, activation_grid q) {
    const std::size_t id = value(1, 1, c, q);
    g.values[id].flat = true;
    return id;
  }
  runtime::lowered_weighted lower(const nn::weighted_spec& s, std::size_t in, std::size_t out,
                                  std::size_t flat_c = 0) {
    return runtime::lower_weighted(s, g.values[in].grid, g.values[out].grid, flat_c, "tiny");
  }
  template <class Step>
  void push(Step&& s, std::string name) {  // emplaced: see graph_builder::push
    g.steps.emplace_back(std::in_place_type<std::decay_t<Step>>, std::forward<Step>(s));
    g.step_names.push_back(std::move(name));
  }
};

/// Every step kind: 3x3 and 1x1 convolutions, depthwise stride 1 and 2, residual adds
/// (image and flat), max and global average pooling, channel concatenation, flatten + dense
/// (NHWC reorder).
runtime::graph tiny_graph() {
  tiny_builder b;
  b.g.input_c = 2;
  b.g.input_h = 8;
  b.g.input_w = 8;
  const std::size_t v0 = b.value(8, 8, 2, grid(0.03125f, 100));
  b.push(runtime::quantize_step{v0}, "model.quant");
  const std::size_t v1 = b.value(8, 8, 4, grid(0.05f, 10));
  b.push(runtime::conv_step{v0, v1, 3, 1, 1, b.lower(weighted(false, 4, 2, 3, 1, activation::relu, 1), v0, v1)},
         "model.0");
  const std::size_t v2 = b.value(8, 8, 4, grid(0.04f, 0));
  b.push(runtime::depthwise_step{v1, v2, 1, b.lower(weighted(false, 4, 4, 3, 4, activation::relu6, 2), v1, v2)},
         "model.1.dw");
  const std::size_t v3 = b.value(8, 8, 4, grid(0.045f, 128));
  b.push(runtime::conv_step{v2, v3, 1, 1, 0, b.lower(weighted(false, 4, 4, 1, 1, activation::none, 3), v2, v3)},
         "model.1.project");
  const std::size_t v4 = b.value(8, 8, 4, grid(0.06f, 5));
  b.push(runtime::add_step{v1, v3, v4, activation::relu}, "model.1.add");
  const std::size_t v5 = b.value(4, 4, 4, grid(0.06f, 5));
  b.push(runtime::max_pool_step{v4, v5}, "model.2");
  const std::size_t v6 = b.value(2, 2, 4, grid(0.05f, 20));
  b.push(runtime::depthwise_step{v5, v6, 2, b.lower(weighted(false, 4, 4, 3, 4, activation::none, 4), v5, v6)},
         "model.3");
  const std::size_t v7 = b.value(2, 2, 6, grid(0.07f, 3));
  b.push(runtime::conv_step{v6, v7, 3, 1, 1, b.lower(weighted(false, 6, 4, 3, 1, activation::relu, 5), v6, v7)},
         "model.4");
  const std::size_t v8 = b.flat(24, grid(0.07f, 3));  // flatten of v7: no step
  b.g.values[v8].flat_c = 6;
  b.g.values[v8].storage_of = v7;
  const std::size_t v9 = b.flat(5, grid(0.1f, 128));
  b.push(runtime::dense_step{v8, v9, b.lower(weighted(true, 5, 24, 1, 1, activation::none, 6), v8, v9, 6)},
         "model.6");
  const std::size_t cat = b.value(2, 2, 10, grid(0.05f, 20));  // v6 is on this grid: a copy
  b.push(runtime::concat_step{{v7, v6}, cat}, "model.head.concat");
  const std::size_t v10 = b.flat(10, grid(0.03f, 0));
  b.push(runtime::global_avg_pool_step{cat, v10}, "model.head.pool");
  const std::size_t v11 = b.flat(5, grid(0.08f, 120));
  b.push(runtime::dense_step{v10, v11, b.lower(weighted(true, 5, 10, 1, 1, activation::none, 7), v10, v11)},
         "model.head.fc");
  const std::size_t v12 = b.flat(5, grid(0.12f, 128, 1, 250));
  b.push(runtime::add_step{v9, v11, v12, activation::none}, "model.\"sum\"\\\xc3\xa9");  // escapes
  b.g.output = v12;
  return std::move(b.g);
}

void check_same(const runtime::lowered_weighted& a, const runtime::lowered_weighted& b) {
  CHECK(a.out == b.out);
  CHECK(a.depth == b.depth);
  CHECK(a.weight == b.weight);
  CHECK(a.bias == b.bias);
  CHECK(a.requant.fixed.multiplier == b.requant.fixed.multiplier);
  CHECK(a.requant.fixed.shift == b.requant.fixed.shift);
  REQUIRE(a.requant.scale.size() == b.requant.scale.size());
  for (std::size_t i = 0; i < a.requant.scale.size(); ++i)
    CHECK(std::bit_cast<std::uint32_t>(a.requant.scale[i]) == std::bit_cast<std::uint32_t>(b.requant.scale[i]));
  CHECK(a.requant.zero_point == b.requant.zero_point);
  CHECK(a.requant.qmin == b.requant.qmin);
  CHECK(a.requant.qmax == b.requant.qmax);
}

template <class T>
std::vector<std::size_t> fields(const T& s) {
  if constexpr (std::is_same_v<T, runtime::quantize_step>) return {s.out};
  else if constexpr (std::is_same_v<T, runtime::conv_step>) return {s.in, s.out, s.kernel, s.stride, s.padding};
  else if constexpr (std::is_same_v<T, runtime::depthwise_step>) return {s.in, s.out, s.stride};
  else if constexpr (std::is_same_v<T, runtime::add_step>)
    return {s.a, s.b, s.out, static_cast<std::size_t>(s.act)};
  else if constexpr (std::is_same_v<T, runtime::concat_step>) {
    std::vector<std::size_t> f = s.inputs;
    f.push_back(s.out);
    return f;
  }
  else return {s.in, s.out};
}

void check_same(const runtime::graph& a, const runtime::graph& b) {
  CHECK(a.input_c == b.input_c);
  CHECK(a.input_h == b.input_h);
  CHECK(a.input_w == b.input_w);
  CHECK(a.output == b.output);
  CHECK(a.step_names == b.step_names);
  REQUIRE(a.values.size() == b.values.size());
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    const runtime::value_info &x = a.values[i], &y = b.values[i];
    CHECK((x.h == y.h && x.w == y.w && x.c == y.c && x.flat == y.flat && x.flat_c == y.flat_c));
    CHECK(x.storage_of == y.storage_of);
    CHECK(std::bit_cast<std::uint32_t>(x.grid.scale) == std::bit_cast<std::uint32_t>(y.grid.scale));
    CHECK((x.grid.zero_point == y.grid.zero_point && x.grid.qmin == y.grid.qmin && x.grid.qmax == y.grid.qmax));
  }
  REQUIRE(a.steps.size() == b.steps.size());
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    REQUIRE(a.steps[i].index() == b.steps[i].index());
    std::visit(
        [&](const auto& s) {
          using T = std::decay_t<decltype(s)>;
          const T& t = std::get<T>(b.steps[i]);
          CHECK(fields(s) == fields(t));
          if constexpr (requires { s.w; }) check_same(s.w, t.w);
        },
        a.steps[i]);
  }
}

std::string read_text(const std::filesystem::path& p) {
  const std::vector<unsigned char> bytes = io::read_file(p);
  return {bytes.begin(), bytes.end()};
}

}  // namespace

TEST_CASE("float_literal writes every float exactly, with no locale dependence") {
  const float values[] = {0.1f,
                          -0.1f,
                          1.0f / 3.0f,
                          0.0f,
                          -0.0f,
                          1.0f,
                          6.0f / 255.0f,
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(),
                          -3.0f * std::numeric_limits<float>::denorm_min()};
  for (const float v : values) {
    const std::string text = io::cpp::float_literal(v);
    REQUIRE(text.back() == 'f');
    CHECK(text.find("0x") != std::string::npos);
    const float back = std::strtof(text.substr(0, text.size() - 1).c_str(), nullptr);
    CHECK(std::bit_cast<std::uint32_t>(back) == std::bit_cast<std::uint32_t>(v));
  }
  CHECK(io::cpp::float_literal(0.5f) == "0x1p-1f");
  CHECK(io::cpp::float_literal(-1.5f) == "-0x1.8p+0f");
  CHECK_THROWS_AS(io::cpp::float_literal(std::nanf("")), value_error);
  CHECK_THROWS_AS(io::cpp::float_literal(std::numeric_limits<float>::infinity()), value_error);
}

TEST_CASE("integer and string literals and namespace names") {
  CHECK(io::cpp::int_literal(-5) == "-5");
  CHECK(io::cpp::int_literal(std::numeric_limits<std::int32_t>::min()) == "(-2147483647 - 1)");
  CHECK(io::cpp::int_literal(4294967295) == "4294967295");
  CHECK_THROWS_AS(io::cpp::int_literal(std::int64_t{1} << 40), value_error);
  CHECK(io::cpp::string_literal("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(io::cpp::string_literal("\n1\xff") == "\"\\0121\\377\"");  // octal: "1" stays a digit of its own
  CHECK(io::cpp::is_namespace_name("resnet_w8a8"));
  CHECK(io::cpp::is_namespace_name("m2"));
  CHECK_FALSE(io::cpp::is_namespace_name(""));
  CHECK_FALSE(io::cpp::is_namespace_name("2m"));
  CHECK_FALSE(io::cpp::is_namespace_name("my-model"));
  CHECK_FALSE(io::cpp::is_namespace_name("namespace"));
  CHECK_FALSE(io::cpp::is_namespace_name("_Model"));
  CHECK_FALSE(io::cpp::is_namespace_name("a__b"));
  CHECK_FALSE(io::cpp::is_namespace_name("std"));
}

// Set XQUANT_UPDATE_GOLDEN=1 to rewrite examples/firmware/tiny_model.hpp after an intended
// change of the generated code (then rebuild: the file is also included above).
TEST_CASE("the committed tiny model is exactly what export_cpp_header writes") {
  const runtime::graph g = tiny_graph();
  if (std::getenv("XQUANT_UPDATE_GOLDEN") != nullptr) io::export_cpp_header(golden_path, g, "tiny");
  CHECK(read_text(golden_path) == io::cpp_header_text(g, "tiny"));
}

TEST_CASE("the generated make_graph rebuilds the exported graph field for field") {
  check_same(tiny::make_graph(), tiny_graph());
  CHECK(tiny::input_channels == 2);
  CHECK(tiny::input_height == 8);
  CHECK(tiny::input_width == 8);
  CHECK(tiny::output_size == 5);
}

TEST_CASE("the generated model computes the same logits bit for bit") {
  runtime::int8_model exported(tiny_graph(), 2), generated(tiny::make_graph(), 2);
  const std::size_t n = 5;  // several chunks of max_batch
  std::vector<float> images(n * exported.input_size());
  std::uint32_t state = 99;
  for (float& x : images) x = static_cast<float>(next_random(state) % 8001) / 1000.0f - 3.0f;
  std::vector<float> a(n * 5), b(n * 5);
  exported.run(images, n, a);
  generated.run(images, n, b);
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK(std::bit_cast<std::uint32_t>(a[i]) == std::bit_cast<std::uint32_t>(b[i]));
  // The model is not degenerate: the logits differ between images.
  std::size_t differing = 0;
  for (std::size_t i = 5; i < a.size(); ++i) differing += a[i] != a[i % 5];
  CHECK(differing >= 10);
}

TEST_CASE("export_cpp_header writes atomically and reports bad names and paths") {
  temp_dir dir;
  const runtime::graph g = tiny_graph();
  io::export_cpp_header(dir / "m.hpp", g, "my_model");
  const std::string text = read_text(dir / "m.hpp");
  CHECK(text == io::cpp_header_text(g, "my_model"));
  CHECK(text.find("namespace my_model {") != std::string::npos);
  CHECK(dir.entries() == 1);
  CHECK_THROWS_AS(io::export_cpp_header(dir / "bad.hpp", g, "my-model"), value_error);
  CHECK_THROWS_AS(io::export_cpp_header(dir / "missing" / "m.hpp", g, "m"), io_error);
  CHECK(dir.entries() == 1);
  runtime::graph broken = tiny_graph();
  broken.step_names.pop_back();
  CHECK_THROWS_AS(io::cpp_header_text(broken, "m"), value_error);
  broken = tiny_graph();
  std::get<runtime::conv_step>(broken.steps[1]).w.bias.pop_back();
  CHECK_THROWS_AS(io::cpp_header_text(broken, "m"), value_error);
}
