// The reference models' QAT versions (examples/common/models.hpp): an FP32 model's state
// copies into them by name, and with an LSQ bundle every layer's step sizes initialise
// and learn. No data set needed: random images.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/models.hpp"
#include "xquant/autograd/graph.hpp"
#include "xquant/nn/functional/loss.hpp"

using namespace xquant;
using namespace xquant::examples;

namespace {

using w4a4_lsq = wa_bundle<4, 4, lsq>;

bool is_quantizer_tensor(const std::string& name) {
  return name.find("weight_fake_quant") != std::string::npos ||
         name.find("activation_post_process") != std::string::npos;
}

array<float> random_images(std::size_t n, std::mt19937& rng) {
  array<float> x(shape_t{n, 1, 28, 28});
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (float& v : x) v = d(rng);
  return x;
}

}  // namespace

TEST_CASE("copy_state: an FP32 model's tensors copy into its QAT version by name") {
  auto fp32 = make_model<no_quant>("mobilenet", 1);
  auto qat = make_model<w4a4_lsq>("mobilenet", 2);  // another seed: other initial weights
  const std::vector<std::string> missing = copy_state(*fp32, *qat);
  CHECK(!missing.empty());
  for (const auto& name : missing) {
    CAPTURE(name);
    CHECK(is_quantizer_tensor(name));
  }
  const auto pf = fp32->parameters();
  std::size_t compared = 0;
  for (auto& q : qat->parameters()) {
    for (const auto& f : pf) {
      if (f.name != q.name) continue;
      CHECK(f.var->value() == q.var->value());
      ++compared;
    }
  }
  CHECK(compared == pf.size());
}

TEST_CASE("copy_state: a model without the source's tensors is rejected and left unchanged") {
  auto cnn = make_model<no_quant>("cnn", 1);
  auto resnet = make_model<w8a8>("resnet", 2);
  const array<float> before = resnet->parameters()[0].var->value();
  CHECK_THROWS_AS(copy_state(*cnn, *resnet), value_error);
  CHECK(resnet->parameters()[0].var->value() == before);
}

TEST_CASE("every reference model with an LSQ bundle: a training forward initialises every step size, "
          "one backward reaches them all") {
  std::mt19937 rng(3);
  for (const char* name : model_names) {
    CAPTURE(name);
    auto fp32 = make_model<no_quant>(name, 0);
    auto qat = make_model<w4a4_lsq>(name, 0);
    (void)copy_state(*fp32, *qat);
    qat->train();
    const std::vector<int> labels{1, 7, 3, 0};
    const nn::variable logits = (*qat)(nn::variable(random_images(labels.size(), rng)));
    autograd::backward(nn::functional::softmax_cross_entropy(logits, std::span<const int>(labels)));
    std::size_t steps = 0;
    for (auto& p : qat->parameters()) {
      if (!p.name.ends_with(".scale") || !is_quantizer_tensor(p.name)) continue;
      CAPTURE(p.name);
      ++steps;
      REQUIRE(p.var->has_grad());
      CHECK(std::any_of(p.var->grad().begin(), p.var->grad().end(), [](float g) { return g != 0.0f; }));
    }
    CHECK(steps > 4);
    for (auto& b : qat->buffers()) {
      if (b.name.ends_with(".initialized")) CHECK(b.value->data()[0] == 1.0f);
    }
  }
}
