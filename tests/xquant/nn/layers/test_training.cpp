// The layers together: a small CNN in nn::sequential (the "cnn" reference model's layer
// types), its state_dict-style names, seeded initialisation through the module tree and a
// few steps of plain SGD on a synthetic task.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/loss.hpp"
#include "xquant/nn/layers.hpp"

using namespace xquant;
using namespace nn_test;

namespace {

void build_small_cnn(nn::sequential& net) {
  net.emplace<nn::conv2d<>>(nn::conv2d_config{.in = 1, .out = 4, .kernel = 3, .padding = 1, .bias = false});
  net.emplace<nn::batch_norm2d>(4);
  net.emplace<nn::relu>();
  net.emplace<nn::max_pool2d>(2);
  net.emplace<nn::flatten>();
  net.emplace<nn::linear<>>(nn::linear_config{.in = 4 * 4 * 4, .out = 2});
}

// Class 0: the top half is brighter; class 1: the bottom half.
void make_batch(std::mt19937& rng, array<float>& x, std::vector<int>& labels) {
  std::normal_distribution<float> noise(0.f, 0.3f);
  x = array<float>(shape_t{16, 1, 8, 8});
  labels.resize(16);
  for (std::size_t i = 0; i < 16; ++i) {
    labels[i] = int(i % 2);
    for (std::size_t r = 0; r < 8; ++r)
      for (std::size_t c = 0; c < 8; ++c) x(i, 0, r, c) = ((r < 4) == (labels[i] == 0) ? 1.f : 0.f) + noise(rng);
  }
}

}  // namespace

TEST_CASE("a sequential CNN has PyTorch's state_dict names") {
  nn::sequential net;
  build_small_cnn(net);
  std::vector<std::string> params, buffers;
  for (const auto& p : net.parameters()) params.push_back(p.name);
  for (const auto& b : net.buffers()) buffers.push_back(b.name);
  CHECK(params == std::vector<std::string>{"0.weight", "1.weight", "1.bias", "5.weight", "5.bias"});
  CHECK(buffers == std::vector<std::string>{"1.running_mean", "1.running_var"});
}

TEST_CASE("module::reset_parameters initialises the whole tree from one seed") {
  nn::sequential a, b;
  build_small_cnn(a);
  build_small_cnn(b);
  std::mt19937 ra(0), rb(0);
  a.reset_parameters(ra);
  b.reset_parameters(rb);
  auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pa[i].var->value() == pb[i].var->value());
  CHECK(pa[0].var->value() != array<float>(shape_t{4, 1, 3, 3}, 0.f));
}

TEST_CASE("a few SGD steps on the small CNN reduce the loss") {
  std::mt19937 rng(0);
  nn::sequential net;
  build_small_cnn(net);
  net.reset_parameters(rng);
  array<float> x;
  std::vector<int> labels;
  float first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    make_batch(rng, x, labels);
    net.zero_grad();
    const autograd::variable loss = nn::functional::softmax_cross_entropy(net(autograd::variable(x)), labels);
    autograd::backward(loss);
    {
      autograd::no_grad_guard guard;
      for (auto& p : net.parameters()) {
        float* w = p.var->value().data();
        const float* g = p.var->grad().data();
        for (std::size_t i = 0; i < p.var->size(); ++i) w[i] -= 0.1f * g[i];
      }
    }
    (step == 0 ? first : last) = loss.value()(0);
  }
  CHECK(last < 0.5f * first);
  net.eval();
  make_batch(rng, x, labels);
  CHECK(nn::functional::count_correct(net(autograd::variable(x)), labels) >= 14);
}
