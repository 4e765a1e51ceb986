#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "checkpoint_test_util.hpp"
#include "xquant/autograd/graph.hpp"
#include "xquant/autograd/ops.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/optim/adam.hpp"
#include "xquant/optim/schedule.hpp"
#include "xquant/optim/sgd.hpp"

using namespace xquant;
using nlohmann::json;

namespace {

constexpr std::size_t samples = 16, features = 3, batch = 4, steps_per_epoch = samples / batch;

struct dataset {
  std::vector<array<float>> x;
  std::vector<float> y;
};

/// Fixed synthetic least-squares data: y = 0.8 x0 - 1.2 x1 + 0.5 x2 + 0.3 + noise.
const dataset& data() {
  static const dataset d = [] {
    dataset out;
    for (std::size_t i = 0; i < samples; ++i) {
      array<float> x = array<float>::from_shape({features});
      for (std::size_t j = 0; j < features; ++j) x(j) = static_cast<float>(std::sin(0.37 * double(i * features + j) + 0.1));
      out.y.push_back(0.8f * x(0) - 1.2f * x(1) + 0.5f * x(2) + 0.3f + 0.05f * static_cast<float>(std::cos(double(i))));
      out.x.push_back(std::move(x));
    }
    return out;
  }();
  return d;
}

/// The order of the samples in `epoch`: a function of (seed, epoch) only, so a resumed
/// run can recompute it. Fisher-Yates over mt19937, whose output the standard fixes.
std::vector<std::size_t> epoch_order(std::uint64_t seed, std::size_t epoch) {
  std::vector<std::size_t> order(samples);
  for (std::size_t i = 0; i < samples; ++i) order[i] = i;
  std::mt19937 rng(static_cast<std::uint32_t>(seed * 1000003u + epoch));
  for (std::size_t i = samples - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  return order;
}

/// mean over the batch of (model(x) - y)^2, built from the generic autograd ops.
variable batch_loss(tiny_model& model, const std::vector<std::size_t>& indices) {
  using namespace xquant::autograd;
  variable total;
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::size_t i = indices[k];
    const variable diff = add(model(variable(data().x[i])), variable(array<float>{-data().y[i]}));
    const variable sq = mul(diff, diff);
    total = k == 0 ? sq : add(total, sq);
  }
  return mul(total, variable(array<float>{1.0f / static_cast<float>(indices.size())}));
}

double full_loss(tiny_model& model) {
  autograd::no_grad_guard guard;
  std::vector<std::size_t> all(samples);
  for (std::size_t i = 0; i < samples; ++i) all[i] = i;
  return batch_loss(model, all).value()(0);
}

/// Global steps [from, to) of the training loop: schedule, zero_grad, backward, step.
void train(tiny_model& model, optim::optimizer& opt, const optim::cosine_schedule& schedule, std::uint64_t seed,
           std::size_t from, std::size_t to) {
  for (std::size_t t = from; t < to; ++t) {
    const std::size_t epoch = t / steps_per_epoch, b = t % steps_per_epoch;
    const auto order = epoch_order(seed, epoch);
    const std::vector<std::size_t> indices(order.begin() + static_cast<std::ptrdiff_t>(b * batch),
                                           order.begin() + static_cast<std::ptrdiff_t>((b + 1) * batch));
    opt.set_lr(schedule.lr_at(t));
    opt.zero_grad();
    autograd::backward(batch_loss(model, indices));
    opt.step();
    model.seen(0) += static_cast<float>(batch);
  }
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> optimizer_snapshot(optim::optimizer& opt) {
  std::vector<float> out;
  for (auto& s : opt.state()) out.insert(out.end(), s.value->begin(), s.value->end());
  for (auto& c : opt.counters()) out.push_back(static_cast<float>(*c.value));
  return out;
}

/// Trains `total` steps in one go, and again as total/2 steps + checkpoint + a fresh
/// model and optimizer loaded from it + the remaining steps; the results must be
/// bit-identical. As a control, resuming without the optimizer state must differ.
template <class Opt, class Options>
void check_resume_is_exact(const Options& options, double base_lr) {
  const std::uint64_t seed = 20240917;
  const std::size_t total = 22, half = total / 2;  // half = 11: in the middle of epoch 2
  const optim::cosine_schedule schedule(base_lr, total);
  temp_dir dir;
  const auto path = dir / "mid.xqckpt";

  tiny_model uninterrupted;
  Opt opt_a(uninterrupted.parameters(), options);
  const double initial_loss = full_loss(uninterrupted);
  train(uninterrupted, opt_a, schedule, seed, 0, total);
  CHECK(full_loss(uninterrupted) < 0.5 * initial_loss);  // it does learn

  {
    tiny_model first_half;
    Opt opt_b(first_half.parameters(), options);
    train(first_half, opt_b, schedule, seed, 0, half);
    io::save_checkpoint(path, first_half, opt_b, {{"step", half}, {"seed", seed}, {"recipe", "resume test"}});
  }

  tiny_model resumed(features, -3.0f);  // different initial values: the load must overwrite them
  Opt opt_c(resumed.parameters(), options);
  opt_c.set_lr(123.0);
  const json meta = io::load_checkpoint(path, resumed, opt_c);
  const auto step = meta.at("step").get<std::size_t>();
  CHECK(step == half);
  train(resumed, opt_c, schedule, meta.at("seed").get<std::uint64_t>(), step, total);

  CHECK(bit_identical(snapshot(resumed), snapshot(uninterrupted)));
  CHECK(bit_identical(optimizer_snapshot(opt_c), optimizer_snapshot(opt_a)));
  CHECK(resumed.seen(0) == static_cast<float>(total * batch));

  // Control: the same resume without the optimizer state does not reproduce the run,
  // so the test above depends on the state being restored.
  tiny_model weights_only(features, -3.0f);
  Opt opt_d(weights_only.parameters(), options);
  io::load_checkpoint(path, weights_only);
  train(weights_only, opt_d, schedule, seed, half, total);
  CHECK_FALSE(bit_identical(snapshot(weights_only), snapshot(uninterrupted)));
}

}  // namespace

TEST_CASE("resuming from a checkpoint mid-training gives the same final weights as an uninterrupted run") {
  SUBCASE("sgd, momentum 0.9, weight decay, cosine schedule") {
    check_resume_is_exact<optim::sgd>(optim::sgd_options{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4}, 0.05);
  }
  SUBCASE("sgd, nesterov") {
    check_resume_is_exact<optim::sgd>(
        optim::sgd_options{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}, 0.05);
  }
  SUBCASE("adam, coupled weight decay") {
    check_resume_is_exact<optim::adam>(optim::adam_options{.lr = 0.05, .weight_decay = 1e-3}, 0.05);
  }
  SUBCASE("adamw") { check_resume_is_exact<optim::adamw>(optim::adamw_options{.lr = 0.05}, 0.05); }
}
