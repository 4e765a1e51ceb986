// Int8 conversion of a reference model and integer-only inference on the 10,000 test images.
//
// From a QAT checkpoint (examples/qat):
//   convert --model cnn --bundle w8a8 [--estimator clipped_ste|lsq] [--edge8 1] --from cnn_w8a8.xqckpt
// Post-training quantization from an FP32 checkpoint (examples/train), the recipe of
// shared/reference-models.md: BN folded, activations calibrated with min/max on the first 1,000
// training images, weights int8 symmetric per output channel or per tensor:
//   convert --model cnn --ptq per-channel|per-tensor --from cnn.xqckpt
//
// Both run the same path: the QAT-form model (fake quantization) is traced once
// (runtime::build_graph) and lowered to runtime::int8_model, which then classifies the test
// set with integer arithmetic only. Printed: fake-quant accuracy, int8 accuracy, the share of
// images where both pick the same class, and the int8 model's activation memory.
//
//   [--batch 500] (int8 batch) [--threads 1] [--limit N] (first N test images)
//   [--save FILE] writes the int8 model file (io::save_int8_model) and prints its size
//                 against the --from checkpoint file and against the FP32 model's own
//                 tensors (parameters and BatchNorm buffers, 4 bytes each)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/fashion_mnist.hpp"
#include "common/models.hpp"
#include "common/training.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/io/int8_model_file.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/runtime/graph.hpp"
#include "xquant/runtime/int8_model.hpp"

using namespace xquant;
using namespace xquant::examples;

namespace {

struct options {
  std::string model, bundle, estimator, from, ptq, save;
  bool edge8 = false;
  std::size_t batch = 500, limit = 10000;
};

/// Weights int8 symmetric per tensor (the PTQ "per-tensor" row), activations as w8a8.
using w8a8_per_tensor = bundle<scheme<narrow_bits<8>, symmetric, per_tensor>, w8a8::activation>;

/// PTQ calibration: one forward of the first 1,000 training images in training mode with
/// BN frozen and no gradients, so every activation observer sees their min/max (the
/// moving-average observer's first observation is the plain min/max).
void calibrate_min_max(nn::module& model) {
  const dataset calib = load_fashion_mnist(split::train, 1000);
  autograd::no_grad_guard no_grad;
  model.train();
  nn::freeze_bn(model, true);
  (void)model(nn::variable(calib.images));
  nn::freeze_observers(model, true);
  model.eval();
}

/// Argmax of each row of `logits` [n][classes].
std::vector<std::size_t> predictions(const float* logits, std::size_t n, std::size_t classes) {
  std::vector<std::size_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float* row = logits + i * classes;
    out[i] = static_cast<std::size_t>(std::max_element(row, row + classes) - row);
  }
  return out;
}

/// Fake-quant predictions of the QAT-form model (evaluation mode).
std::vector<std::size_t> fake_quant_predictions(nn::module& model, const dataset& test, std::size_t batch) {
  autograd::no_grad_guard no_grad;
  model.eval();
  std::vector<std::size_t> out;
  for (std::size_t b = 0; b < test.size(); b += batch) {
    const std::size_t n = std::min(batch, test.size() - b);
    array<float> x(shape_t{n, 1, image_rows, image_cols});
    std::copy_n(test.images.data() + b * image_pixels, n * image_pixels, x.data());
    const nn::variable y = model(nn::variable(x));
    const std::vector<std::size_t> p = predictions(y.value().data(), n, y.shape()[1]);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

double accuracy(const std::vector<std::size_t>& pred, const dataset& test) {
  std::size_t correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == test.labels[i];
  return 100.0 * static_cast<double>(correct) / static_cast<double>(pred.size());
}

/// Bytes of the FP32 model's own tensors: every parameter and buffer outside the quantizers.
std::size_t fp32_tensor_bytes(nn::module& model) {
  const auto is_quantizer = [](const std::string& name) {
    return name.find("fake_quant") != std::string::npos || name.find("activation_post_process") != std::string::npos;
  };
  std::size_t n = 0;
  for (const auto& p : model.parameters()) n += is_quantizer(p.name) ? 0 : p.var->size();
  for (const auto& b : model.buffers()) n += is_quantizer(b.name) ? 0 : b.value->size();
  return 4 * n;
}

void report_file_size(nn::module& model, const runtime::graph& graph, const options& o) {
  io::save_int8_model(o.save, graph, {{"model", o.model}});
  const auto bytes = static_cast<double>(std::filesystem::file_size(o.save));
  const auto checkpoint = static_cast<double>(std::filesystem::file_size(o.from));
  const auto tensors = static_cast<double>(fp32_tensor_bytes(model));
  std::printf("%s: %.0f bytes, %.3fx the checkpoint %s (%.0f bytes), %.3fx the FP32 tensors (%.0f bytes)\n",
              o.save.c_str(), bytes, bytes / checkpoint, o.from.c_str(), checkpoint, bytes / tensors, tensors);
}

template <class Q, class Qedge>
int run(const options& o) {
  auto model = make_model<Q, Qedge>(o.model, 0);
  if (o.ptq.empty()) {
    io::load_checkpoint(o.from, *model);
  } else {
    io::load_checkpoint(o.from, *model, io::load_options{.allow_missing_buffers = true});
    calibrate_min_max(*model);
  }
  const dataset test = load_fashion_mnist(split::test, o.limit);
  // Conversion first: it gives each layer its input scale, so that the fake-quant forward
  // adds the bias the int8 model adds (nn/layers/exact_eval.hpp).
  runtime::graph graph = runtime::build_graph(*model, array<float>(shape_t{1, 1, image_rows, image_cols}, 0.0f));
  if (!o.save.empty()) report_file_size(*model, graph, o);
  runtime::int8_model int8(std::move(graph), o.batch);
  const std::vector<std::size_t> fq = fake_quant_predictions(*model, test, o.batch);
  std::vector<float> logits(test.size() * int8.output_size());
  const auto t0 = std::chrono::steady_clock::now();
  int8.run(std::span<const float>(test.images.data(), test.size() * image_pixels), test.size(), logits);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<std::size_t> q = predictions(logits.data(), test.size(), int8.output_size());

  std::size_t same = 0;
  for (std::size_t i = 0; i < q.size(); ++i) same += q[i] == fq[i];
  const std::string what = o.ptq.empty() ? o.bundle + " QAT" : "w8a8 PTQ " + o.ptq;
  std::printf("%s %s: fake-quant %.2f %%, int8 %.2f %%, same class %.2f %% (%zu / %zu), %.0f images/s "
              "(batch %zu), activations %.1f KiB (%zu images per chunk)\n",
              o.model.c_str(), what.c_str(), accuracy(fq, test), accuracy(q, test),
              100.0 * static_cast<double>(same) / static_cast<double>(q.size()), same, q.size(),
              static_cast<double>(test.size()) / seconds, o.batch,
              static_cast<double>(int8.activation_bytes()) / 1024.0, int8.chunk_images());
  return 0;
}

template <class Estimator>
int dispatch_qat(const options& o) {
  return with_wa_bundle<Estimator>(o.bundle, o.edge8, [&]<class Q, class Qedge>() { return run<Q, Qedge>(o); });
}

}  // namespace

int main(int argc, char** argv) try {
  args a(argc, argv, "convert --model cnn|mobilenet|resnet --from FILE [--bundle w8a8|w4a8|w4a4] "
                     "[--estimator clipped_ste|ste|lsq] [--edge8 0|1] [--ptq per-channel|per-tensor] "
                     "[--batch N] [--threads N] [--limit N] [--save FILE]");
  options o;
  o.model = a.get("model", std::string("cnn"));
  o.bundle = a.get("bundle", std::string("w8a8"));
  o.estimator = a.get("estimator", std::string("clipped_ste"));
  o.ptq = a.get("ptq", std::string());
  o.from = a.get("from", o.model + (o.ptq.empty() ? "_" + o.bundle : std::string()) + ".xqckpt");
  o.edge8 = a.get("edge8", 0) != 0;
  o.batch = a.get("batch", o.batch);
  o.limit = a.get("limit", o.limit);
  o.save = a.get("save", std::string());
  set_num_threads(a.get("threads", std::size_t{1}));
  a.finish();
  if (o.ptq == "per-channel") return run<w8a8, w8a8>(o);
  if (o.ptq == "per-tensor") return run<w8a8_per_tensor, w8a8_per_tensor>(o);
  check<value_error>(o.ptq.empty(), "unknown --ptq '", o.ptq, "' (per-channel, per-tensor)");
  if (o.estimator == "lsq") return dispatch_qat<lsq>(o);
  // ste and clipped_ste differ only in the backward pass: the same quantizer modules.
  check<value_error>(o.estimator == "clipped_ste" || o.estimator == "ste", "unknown --estimator '", o.estimator,
                     "' (clipped_ste, ste, lsq)");
  return dispatch_qat<clipped_ste>(o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "convert: %s\n", e.what());
  return 1;
}
