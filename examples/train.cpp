// Trains a reference model in FP32 on Fashion-MNIST with the reference recipe and saves
// a checkpoint; --resume continues from one (the result equals an uninterrupted run).
//
//   train --model cnn|mobilenet|resnet [--epochs 10] [--threads 1] [--out cnn.xqckpt]
//         [--resume cnn.xqckpt] [--limit N] [--seed 0]

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/args.hpp"
#include "common/fashion_mnist.hpp"
#include "common/models.hpp"
#include "common/training.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/optim/sgd.hpp"

using namespace xquant;
using namespace xquant::examples;

int main(int argc, char** argv) try {
  args a(argc, argv, "train --model cnn|mobilenet|resnet [--epochs N] [--batch N] [--lr X] [--threads N] "
                     "[--seed N] [--limit N] [--out FILE] [--resume FILE]");
  const std::string model_name = a.get("model", std::string("cnn"));
  fp32_recipe recipe;
  recipe.epochs = a.get("epochs", recipe.epochs);
  recipe.batch = a.get("batch", recipe.batch);
  recipe.lr = a.get("lr", recipe.lr);
  recipe.seed = a.get("seed", recipe.seed);
  const std::size_t threads = a.get("threads", std::size_t{1});
  const std::size_t limit = a.get("limit", std::size_t{60000});
  const std::string out = a.get("out", model_name + ".xqckpt");
  const std::string resume = a.get("resume", std::string());
  a.finish();

  set_num_threads(threads);
  const dataset train = load_fashion_mnist(split::train, limit);
  const dataset test = load_fashion_mnist(split::test);
  auto model = make_model(model_name, recipe.seed);
  optim::sgd opt(model->parameters(), {.lr = recipe.lr, .momentum = recipe.momentum,
                                       .weight_decay = recipe.weight_decay});
  const std::size_t steps = steps_per_epoch(train.size(), recipe.batch);
  const optim::cosine_schedule schedule(recipe.lr, recipe.epochs * steps);

  std::size_t first_epoch = 0;
  if (!resume.empty()) {
    const auto meta = io::load_checkpoint(resume, *model, opt);
    first_epoch = meta.at("epochs_done").get<std::size_t>();
    std::printf("resumed %s at epoch %zu\n", resume.c_str(), first_epoch);
  }
  std::printf("%s: %zu parameters, %zu training images, %zu threads\n", model_name.c_str(),
              model->parameter_count(), train.size(), threads);
  train::progress bar(recipe.epochs, steps);
  for (std::size_t epoch = first_epoch; epoch < recipe.epochs; ++epoch) {
    train_epoch(*model, opt, schedule, train, recipe.batch, recipe.seed, epoch, bar);
    io::save_checkpoint(out, *model, opt,
                        {{"model", model_name}, {"epochs_done", epoch + 1}, {"seed", recipe.seed},
                         {"recipe", "fp32"}, {"train_images", train.size()}});
  }
  const eval_result r = evaluate(*model, test);
  std::printf("%s fp32 test accuracy %.2f %% (loss %.4f) -> %s\n", model_name.c_str(), r.accuracy, r.loss,
              out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train: %s\n", e.what());
  return 1;
}
