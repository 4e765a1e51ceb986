#pragma once
// The reference training recipe (shared/reference-models.md) as reusable pieces:
// one epoch of SGD over shuffled batches, evaluation, and the FP32 recipe's settings.
// Used by examples/train.cpp, the training benchmark and the smoke test.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/fashion_mnist.hpp"
#include "xquant/autograd/graph.hpp"
#include "xquant/nn/functional/loss.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/optim/optimizer.hpp"
#include "xquant/optim/schedule.hpp"
#include "xquant/train/progress.hpp"

namespace xquant::examples {

/// FP32 recipe: 10 epochs, batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.05 with
/// cosine decay to 0 (per step), seed 0.
struct fp32_recipe {
  std::size_t epochs = 10;
  std::size_t batch = 128;
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::uint32_t seed = 0;
};

struct epoch_result {
  double loss = 0;      ///< mean training loss over the epoch
  double accuracy = 0;  ///< training accuracy (%) over the epoch, in training mode
};

/// Reusable batch buffers: gathering a batch allocates nothing in the steady state.
struct batch_buffers {
  array<float> images;
  std::vector<std::uint8_t> labels8;
  std::vector<int> labels;

  void gather(const dataset& data, std::span<const std::size_t> indices) {
    gather_batch(data, indices, images, labels8);
    labels.assign(labels8.begin(), labels8.end());
  }
};

inline std::size_t steps_per_epoch(std::size_t n, std::size_t batch) { return (n + batch - 1) / batch; }

/// One epoch: shuffled with (seed, epoch), lr from `schedule` at the global step.
template <optim::lr_schedule Schedule>
epoch_result train_epoch(nn::module& model, optim::optimizer& opt, const Schedule& schedule, const dataset& data,
                         std::size_t batch, std::uint32_t seed, std::size_t epoch, train::progress& bar) {
  model.train();
  const std::vector<std::size_t> order = epoch_order(data.size(), seed, epoch);
  const std::size_t steps = steps_per_epoch(data.size(), batch);
  batch_buffers buf;
  double loss_sum = 0;
  std::size_t correct = 0;
  bar.begin_epoch(epoch);
  for (std::size_t s = 0; s < steps; ++s) {
    const std::size_t begin = s * batch;
    buf.gather(data, std::span(order).subspan(begin, std::min(batch, data.size() - begin)));
    opt.set_lr(schedule.lr_at(epoch * steps + s));
    opt.zero_grad();
    const nn::variable logits = model(nn::variable(buf.images));
    const nn::variable loss = nn::functional::softmax_cross_entropy(logits, std::span<const int>(buf.labels));
    autograd::backward(loss);
    opt.step();
    const std::size_t n = buf.labels.size();
    const std::size_t ok = nn::functional::count_correct(logits, std::span<const int>(buf.labels));
    loss_sum += static_cast<double>(loss.value().data()[0]) * static_cast<double>(n);
    correct += ok;
    bar.update(n, loss.value().data()[0], ok);
  }
  bar.end_epoch();
  return {loss_sum / static_cast<double>(data.size()), 100.0 * static_cast<double>(correct) / static_cast<double>(data.size())};
}

struct eval_result {
  double loss = 0;
  double accuracy = 0;  ///< %
  std::size_t correct = 0;
};

/// Accuracy and mean loss in evaluation mode (running BN statistics, no graph).
inline eval_result evaluate(nn::module& model, const dataset& data, std::size_t batch = 500) {
  autograd::no_grad_guard no_grad;
  model.eval();
  std::vector<std::size_t> indices(data.size());
  for (std::size_t i = 0; i < indices.size(); ++i) indices[i] = i;
  batch_buffers buf;
  eval_result r;
  for (std::size_t begin = 0; begin < data.size(); begin += batch) {
    buf.gather(data, std::span(indices).subspan(begin, std::min(batch, data.size() - begin)));
    const nn::variable logits = model(nn::variable(buf.images));
    const auto labels = std::span<const int>(buf.labels);
    r.loss += static_cast<double>(nn::functional::softmax_cross_entropy(logits, labels).value().data()[0]) *
              static_cast<double>(labels.size());
    r.correct += nn::functional::count_correct(logits, labels);
  }
  r.loss /= static_cast<double>(data.size());
  r.accuracy = 100.0 * static_cast<double>(r.correct) / static_cast<double>(data.size());
  return r;
}

}  // namespace xquant::examples
