// io::load_options: allow_missing_buffers (FP32 checkpoint into a QAT model) and the
// strict default.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "checkpoint_test_util.hpp"
#include "xquant/core/error.hpp"
#include "xquant/io/checkpoint.hpp"

namespace {

/// tiny_model plus a buffer ("extra.scale") and, optionally, a parameter the file lacks.
struct extended_model : tiny_model {
  array<float> scale = array<float>({2}, 7.0f);
  variable extra_param{array<float>({1}, 3.0f)};
  explicit extended_model(bool with_param = false) {
    register_buffer("extra_scale", scale);
    if (with_param) register_parameter("extra_param", extra_param);
  }
};

}  // namespace

TEST_CASE("load_options::allow_missing_buffers: missing buffers keep their values, the rest loads") {
  temp_dir dir;
  tiny_model saved(3, 0.25f);
  saved.seen(0) = 42.0f;
  xquant::io::save_checkpoint(dir / "a.xqckpt", saved, {{"epoch", 3}});

  extended_model m;
  CHECK_THROWS_AS(xquant::io::load_checkpoint(dir / "a.xqckpt", m), xquant::io_error);  // strict default
  CHECK(m.seen(0) == 0.0f);  // untouched by the failed load
  std::vector<std::string> missing;
  const auto meta = xquant::io::load_checkpoint(
      dir / "a.xqckpt", m, xquant::io::load_options{.allow_missing_buffers = true, .missing_buffers = &missing});
  CHECK(meta.at("epoch") == 3);
  CHECK(missing == std::vector<std::string>{"extra_scale"});
  CHECK(m.seen(0) == 42.0f);
  CHECK(m.head.weight.value()(2) == saved.head.weight.value()(2));
  CHECK(m.scale(0) == 7.0f);
  CHECK(m.scale(1) == 7.0f);
}

TEST_CASE("load_options::allow_missing_buffers still requires every parameter and rejects extra tensors") {
  temp_dir dir;
  tiny_model saved;
  xquant::io::save_checkpoint(dir / "a.xqckpt", saved);
  extended_model with_param(true);
  CHECK_THROWS_WITH_AS(
      xquant::io::load_checkpoint(dir / "a.xqckpt", with_param, xquant::io::load_options{.allow_missing_buffers = true}),
      doctest::Contains("parameter 'extra_param' is missing"), xquant::io_error);

  extended_model bigger;
  xquant::io::save_checkpoint(dir / "b.xqckpt", bigger);
  tiny_model smaller;
  CHECK_THROWS_WITH_AS(
      xquant::io::load_checkpoint(dir / "b.xqckpt", smaller, xquant::io::load_options{.allow_missing_buffers = true}),
      doctest::Contains("extra_scale"), xquant::io_error);
}
