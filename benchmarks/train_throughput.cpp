// xquant side of the training-throughput benchmark (driven by train_throughput.py, which
// runs the PyTorch side in the same run). Trains one reference model on random
// Fashion-MNIST-shaped batches with the reference optimizer (SGD momentum 0.9, weight
// decay 5e-4) and prints one JSON line. Data preparation is outside the timed loop, as in
// torch_train.py. With --bundle the model is the QAT form (clipped STE, observers
// running), which train_throughput.py --qat times against the FP32 form.
//
//   train_throughput --model cnn --threads 1 [--batch 128] [--images 60000] [--bundle fp32|w8a8|w4a8|w4a4]

#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "common/args.hpp"
#include "common/models.hpp"
#include "xquant/autograd/graph.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/nn/functional/loss.hpp"
#include "xquant/optim/sgd.hpp"

using namespace xquant;
using namespace xquant::examples;

int main(int argc, char** argv) try {
  args a(argc, argv,
         "train_throughput --model NAME [--threads N] [--batch N] [--images N] [--warmup-steps N] [--bundle B]");
  const std::string name = a.get("model", std::string("cnn"));
  const std::size_t threads = a.get("threads", std::size_t{1});
  const std::size_t batch = a.get("batch", std::size_t{128});
  const std::size_t images = a.get("images", std::size_t{60000});
  const std::size_t warmup = a.get("warmup-steps", std::size_t{3});
  const std::string bundle = a.get("bundle", std::string("fp32"));
  a.finish();

  set_num_threads(threads);
  std::unique_ptr<nn::module> model;
  if (bundle == "fp32") {
    model = make_model(name, 0);
  } else {
    with_wa_bundle<clipped_ste>(bundle, false, [&]<class Q, class Qedge>() {
      model = make_model<Q, Qedge>(name, 0);
      return 0;
    });
  }
  model->train();
  optim::sgd opt(model->parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4});
  std::mt19937 rng(0);
  std::normal_distribution<float> pixel;
  std::vector<array<float>> xs;
  std::vector<std::vector<int>> ys;
  for (int b = 0; b < 8; ++b) {
    array<float> x(shape_t{batch, 1, 28, 28});
    for (auto& v : x) v = pixel(rng);
    std::vector<int> y(batch);
    for (auto& l : y) l = static_cast<int>(rng() % 10);
    xs.push_back(std::move(x));
    ys.push_back(std::move(y));
  }
  auto step = [&](std::size_t i) {
    opt.zero_grad();
    const nn::variable loss =
        nn::functional::softmax_cross_entropy((*model)(nn::variable(xs[i % 8])), std::span<const int>(ys[i % 8]));
    autograd::backward(loss);
    opt.step();
  };
  for (std::size_t i = 0; i < warmup; ++i) step(i);
  const std::size_t steps = std::max<std::size_t>(1, images / batch);
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < steps; ++i) step(i);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"framework\": \"xquant\", \"model\": \"%s\", \"bundle\": \"%s\", \"threads\": %zu, "
              "\"batch\": %zu, \"images\": %zu, \"seconds\": %.4f, \"images_per_s\": %.2f}\n",
              name.c_str(), bundle.c_str(), threads, batch, steps * batch, seconds, static_cast<double>(steps * batch) / seconds);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_throughput: %s\n", e.what());
  return 1;
}
