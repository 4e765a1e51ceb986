#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "xquant/optim/adam.hpp"
#include "xquant/optim/optimizer.hpp"
#include "xquant/optim/sgd.hpp"

using namespace xquant;
using xquant::autograd::variable;

namespace {

struct unit : nn::module {
  variable weight{array<float>({2, 3}, 0.5f)};
  variable bias{array<float>({3}, 0.0f)};
  unit() {
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  variable forward(const variable& x) override { return x; }
};

struct two_layer_net : nn::module {
  unit fc1, fc2;
  two_layer_net() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  variable forward(const variable& x) override { return fc2(fc1(x)); }
};

}  // namespace

TEST_CASE("optimizer state is named after the module's parameters") {
  two_layer_net model;
  SUBCASE("sgd with momentum") {
    optim::sgd opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    CHECK(opt.type() == "sgd");
    const auto state = opt.state();
    REQUIRE(state.size() == 4);
    CHECK(state[0].name == "fc1.weight.momentum_buffer");
    CHECK(state[3].name == "fc2.bias.momentum_buffer");
    CHECK(shape_of(*state[0].value) == shape_t{2, 3});
    CHECK(shape_of(*state[3].value) == shape_t{3});
    const auto counters = opt.counters();
    REQUIRE(counters.size() == 4);
    CHECK(counters[1].name == "fc1.bias.step");
    CHECK(*counters[1].value == 0);
  }
  SUBCASE("adam") {
    optim::adam opt(model.parameters(), {});
    CHECK(opt.type() == "adam");
    const auto state = opt.state();
    REQUIRE(state.size() == 8);
    CHECK(state[0].name == "fc1.weight.exp_avg");
    CHECK(state[1].name == "fc1.weight.exp_avg_sq");
    CHECK(state[7].name == "fc2.bias.exp_avg_sq");
    for (const auto& s : state) CHECK(std::all_of(s.value->begin(), s.value->end(), [](float v) { return v == 0; }));
  }
  SUBCASE("adamw") {
    optim::adamw opt(model.parameters(), {});
    CHECK(opt.type() == "adamw");
    CHECK(opt.hyper_parameters().back() == std::pair<std::string, double>{"weight_decay", 1e-2});
  }
}

TEST_CASE("writing through state() and counters() changes what the next step does") {
  variable w(array<float>{1.0f}, true);
  optim::sgd opt({{"w", &w}}, {.lr = 0.1, .momentum = 0.9});
  (*opt.state()[0].value)(0) = 10.0f;  // as if restored from a checkpoint
  *opt.counters()[0].value = 7;
  w.grad() = array<float>{1.0f};
  opt.step();  // not a first step any more: buf = 0.9 * 10 + 1 = 10
  CHECK(w.value()(0) == doctest::Approx(0.0).epsilon(1e-6));
  CHECK(opt.step_count(0) == 8);
}

TEST_CASE("zero_grad keeps the gradient buffers and zero-fills them") {
  two_layer_net model;
  optim::sgd opt(model.parameters(), {.lr = 0.1});
  model.fc1.weight.grad() = array<float>({2, 3}, 1.0f);
  const float* before = model.fc1.weight.grad().data();
  opt.zero_grad();
  CHECK(model.fc1.weight.grad().data() == before);
  CHECK(model.fc1.weight.grad() == array<float>({2, 3}, 0.0f));
}

TEST_CASE("lr can be changed between steps and is validated") {
  variable w(array<float>{1.0f}, true);
  optim::sgd opt({{"w", &w}}, {.lr = 0.1});
  opt.set_lr(0.5);
  CHECK(opt.lr() == 0.5);
  CHECK(opt.hyper_parameters()[0].second == 0.5);
  w.grad() = array<float>{1.0f};
  opt.step();
  CHECK(w.value()(0) == doctest::Approx(0.5).epsilon(1e-6));
  CHECK_THROWS_AS(opt.set_lr(-1), value_error);
  CHECK_THROWS_AS(opt.set_lr(INFINITY), value_error);
  CHECK(opt.lr() == 0.5);
}

TEST_CASE("parameter list errors") {
  variable a(array<float>{1.0f}, true);
  variable b(array<float>{1.0f}, true);
  variable alias = a;  // another handle to a's node
  CHECK_THROWS_WITH_AS(optim::sgd({}, {.lr = 0.1}), doctest::Contains("empty parameter list"), value_error);
  CHECK_THROWS_AS(optim::sgd({{"a", nullptr}}, {.lr = 0.1}), value_error);
  CHECK_THROWS_WITH_AS(optim::sgd({{"a", &a}, {"b", &a}}, {.lr = 0.1}), doctest::Contains("appears twice"),
                       value_error);
  CHECK_THROWS_AS(optim::adam({{"a", &a}, {"alias", &alias}}, {}), value_error);
  CHECK_THROWS_WITH_AS(optim::adam({{"a", &a}, {"a", &b}}, {}), doctest::Contains("two parameters are named 'a'"),
                       value_error);
}

TEST_CASE("a parameter whose shape changed after construction is an error, not a buffer overrun") {
  variable w(array<float>{1.0f, 2.0f}, true);
  optim::adam opt({{"w", &w}}, {});
  w.value() = array<float>{1.0f, 2.0f, 3.0f};
  w.grad() = array<float>{1.0f, 1.0f, 1.0f};
  CHECK_THROWS_AS(opt.step(), shape_error);
  variable u(array<float>({2, 3}, 1.0f), true);
  optim::sgd plain({{"u", &u}}, {.lr = 0.1});
  u.grad() = array<float>({3, 2}, 1.0f);  // same size, wrong shape
  CHECK_THROWS_AS(plain.step(), shape_error);
}

TEST_CASE("optimizers are movable") {
  variable w(array<float>{1.0f}, true);
  std::vector<std::unique_ptr<optim::optimizer>> all;
  all.push_back(std::make_unique<optim::sgd>(std::vector<nn::parameter_ref>{{"w", &w}}, optim::sgd_options{.lr = 0.1}));
  optim::adam a({{"w", &w}}, {});
  optim::adam moved = std::move(a);
  w.grad() = array<float>{1.0f};
  moved.step();
  all[0]->step();
  CHECK(moved.step_count(0) == 1);
  CHECK(moved.state().size() == 2);
}
