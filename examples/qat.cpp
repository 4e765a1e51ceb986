// Quantization-aware training of a reference model, starting from its FP32 checkpoint,
// with the QAT recipe of shared/reference-models.md:
//
//   1. load the FP32 checkpoint into the QAT model (same parameter names; the quantizer
//      tensors are new: min/max quantizer buffers start at scale 1, zero point 0, LSQ step
//      sizes are initialised by their first training forward, i.e. in step 2);
//   2. calibrate: a few batches of the first 1,000 training images in training mode without
//      gradients and with BN statistics frozen, so the activation observers start from
//      sensible ranges before the first step;
//   3. 3 epochs, batch 128, SGD momentum 0.9, no weight decay, lr 0.001 with cosine decay
//      per step; BN folded into the weights during training; for the last epoch the BN
//      statistics and the activation ranges are frozen (weight ranges keep following);
//   4. fake-quant test accuracy on the 10,000 test images, and a QAT checkpoint that
//      holds every quantizer's parameters (buffers "...weight_fake_quant.scale",
//      "...activation_post_process.scale", ... next to the FP32 names).
//
//   qat --model cnn|mobilenet|resnet --bundle w8a8|w4a8|w4a4 [--estimator ste|clipped_ste|lsq]
//       --from cnn.xqckpt [--epochs 3] [--threads 1] [--out cnn_w8a8.xqckpt]
//       [--edge8 1] [--calib-batches 8] [--limit N] [--seed 0]
//
// --edge8 1 keeps the input stub, the first convolution and the last dense layer at w8a8
// (mixed precision). The bundle is a compile-time type: the strings are dispatched to a
// fixed set of instantiations below.
//
// --estimator lsq learns the step sizes (LSQ, Esser et al. 2019; nn::lsq_fake_quant): per
// output channel for weights, per tensor for activations. They start from min/max: the
// weights' own, and the first calibration batch's for activations (which also fixes the
// activation zero point: qmin after ReLU / ReLU6). "Activation ranges frozen" in the last
// epoch means that the activation step sizes stop learning; the weight step sizes keep
// learning. (With --epochs 1 that last epoch is the only one.)

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/fashion_mnist.hpp"
#include "common/models.hpp"
#include "common/training.hpp"
#include "xquant/autograd/variable.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/optim/sgd.hpp"

using namespace xquant;
using namespace xquant::examples;

namespace {

/// QAT recipe: 3 epochs, batch 128, SGD momentum 0.9, no weight decay, lr 0.001 cosine.
struct qat_recipe {
  std::size_t epochs = 3;
  std::size_t batch = 128;
  double lr = 0.001;
  double momentum = 0.9;
  double weight_decay = 0;
  std::uint32_t seed = 0;
  std::size_t calib_images = 1000;  ///< the first training images (the PTQ calibration set)
  std::size_t calib_batches = 8;
};

struct run_options {
  std::string model, bundle, estimator, from, out;
  bool edge8 = false;
  qat_recipe recipe;
};

/// Calibration: observers see calib_images in calib_batches batches; BN stays on its
/// running statistics (frozen), nothing is trained. LSQ quantizers initialise their step
/// sizes (and activation zero points) from the first batch.
void calibrate(nn::module& model, const dataset& train, const qat_recipe& r) {
  autograd::no_grad_guard no_grad;
  model.train();
  nn::freeze_bn(model, true);
  const std::size_t n = std::min(r.calib_images, train.size());
  const std::size_t per = (n + r.calib_batches - 1) / r.calib_batches;
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  batch_buffers buf;
  for (std::size_t b = 0; b < n; b += per) {
    buf.gather(train, std::span(idx).subspan(b, std::min(per, n - b)));
    (void)model(nn::variable(buf.images));
  }
  nn::freeze_bn(model, false);
}

template <class Q, class Qedge>
int run(const run_options& o, const dataset& train, const dataset& test) {
  const qat_recipe& r = o.recipe;
  auto model = make_model<Q, Qedge>(o.model, r.seed);
  // Through the FP32 model: the file must match it exactly; the QAT model has the same
  // names plus its quantizers' (LSQ step sizes are parameters, see copy_state).
  const std::vector<std::string> missing = [&] {
    auto fp32 = make_model<no_quant>(o.model, r.seed);
    io::load_checkpoint(o.from, *fp32);
    return copy_state(*fp32, *model);
  }();
  std::printf("%s %s%s, %s: loaded %s (%zu quantizer tensors start at their initial values)\n", o.model.c_str(),
              o.bundle.c_str(), o.edge8 ? " (edges w8a8)" : "", o.estimator.c_str(), o.from.c_str(), missing.size());

  calibrate(*model, train, r);
  const eval_result before = evaluate(*model, test);
  std::printf("after calibration, before training: fake-quant test accuracy %.2f %% (loss %.4f)\n",
              before.accuracy, before.loss);

  optim::sgd opt(model->parameters(), {.lr = r.lr, .momentum = r.momentum, .weight_decay = r.weight_decay});
  const std::size_t steps = steps_per_epoch(train.size(), r.batch);
  const optim::cosine_schedule schedule(r.lr, r.epochs * steps);
  train::progress bar(r.epochs, steps);
  for (std::size_t epoch = 0; epoch < r.epochs; ++epoch) {
    if (epoch + 1 == r.epochs) {
      nn::freeze_bn(*model, true);         // BN: running statistics only, no more updates
      nn::freeze_observers(*model, true);  // activation ranges (LSQ: step sizes) fixed; weights keep following
    }
    train_epoch(*model, opt, schedule, train, r.batch, r.seed, epoch, bar);
  }
  // Evaluation also refreshes the weight quantizers' buffers from the final weights.
  const eval_result after = evaluate(*model, test);
  io::save_checkpoint(o.out, *model,
                      {{"model", o.model}, {"recipe", "qat"}, {"bundle", o.bundle}, {"estimator", o.estimator},
                       {"edges_w8a8", o.edge8}, {"from", o.from}, {"epochs_done", r.epochs}, {"seed", r.seed},
                       {"train_images", train.size()}, {"test_accuracy", after.accuracy}});
  std::printf("%s %s QAT fake-quant test accuracy %.2f %% (loss %.4f) -> %s\n", o.model.c_str(), o.bundle.c_str(),
              after.accuracy, after.loss, o.out.c_str());
  return 0;
}

template <class Estimator>
int dispatch_bundle(const run_options& o, const dataset& train, const dataset& test) {
  return with_wa_bundle<Estimator>(o.bundle, o.edge8,
                                   [&]<class Q, class Qedge>() { return run<Q, Qedge>(o, train, test); });
}

}  // namespace

int main(int argc, char** argv) try {
  args a(argc, argv, "qat --model cnn|mobilenet|resnet --bundle w8a8|w4a8|w4a4 [--estimator ste|clipped_ste|lsq] "
                     "--from FILE [--epochs 3] [--threads N] [--out FILE] [--edge8 0|1] [--calib-batches N] "
                     "[--limit N] [--seed N]");
  run_options o;
  o.model = a.get("model", std::string("cnn"));
  o.bundle = a.get("bundle", std::string("w8a8"));
  o.estimator = a.get("estimator", std::string("clipped_ste"));
  o.from = a.get("from", o.model + ".xqckpt");
  o.out = a.get("out", o.model + "_" + o.bundle + ".xqckpt");
  o.edge8 = a.get("edge8", 0) != 0;
  o.recipe.epochs = a.get("epochs", o.recipe.epochs);
  o.recipe.seed = a.get("seed", o.recipe.seed);
  o.recipe.calib_batches = a.get("calib-batches", o.recipe.calib_batches);
  const std::size_t threads = a.get("threads", std::size_t{1});
  const std::size_t limit = a.get("limit", std::size_t{60000});
  a.finish();
  check<value_error>(o.recipe.epochs > 0 && o.recipe.calib_batches > 0, "--epochs and --calib-batches must be positive");

  set_num_threads(threads);
  const dataset train = load_fashion_mnist(split::train, limit);
  const dataset test = load_fashion_mnist(split::test);
  if (o.estimator == "clipped_ste") return dispatch_bundle<clipped_ste>(o, train, test);
  if (o.estimator == "ste") return dispatch_bundle<ste>(o, train, test);
  if (o.estimator == "lsq") return dispatch_bundle<lsq>(o, train, test);
  throw value_error("unknown --estimator '" + o.estimator + "' (ste, clipped_ste, lsq)");
} catch (const std::exception& e) {
  std::fprintf(stderr, "qat: %s\n", e.what());
  return 1;
}
