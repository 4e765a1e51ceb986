// Exports a QAT reference model as C++ headers for the firmware example (examples/firmware):
//
//   export_header --model cnn|mobilenet|resnet [--checkpoint resnet_w8a8.xqckpt] --out DIR
//                 [--name NAME] [--images 10] [--seed 1]
//
// writes DIR/<NAME>.hpp (io::export_cpp_header: the int8 model as constexpr arrays and a
// make_graph() function; NAME defaults to the model) and DIR/firmware_data.hpp: test images
// as uint8 pixels, the exact float preprocessing of a pixel, the labels, and the logits that
// runtime::int8_model computes for them here, which the firmware must reproduce bit for bit.
//
// Without --checkpoint the model is a w8a8 QAT model with random weights (PyTorch-style
// initialisation from --seed) whose activation ranges are calibrated on a few synthetic
// images: no training and no data set needed, which is what CI builds the firmware example
// from. The test images are the first Fashion-MNIST test images when the data set is
// installed, else synthetic (seeded random pixels, no labels).

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/fashion_mnist.hpp"
#include "common/models.hpp"
#include "xquant/autograd/variable.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/io/export_header.hpp"
#include "xquant/io/file.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/runtime/graph.hpp"
#include "xquant/runtime/int8_model.hpp"

using namespace xquant;
using namespace xquant::examples;

namespace {

/// Test images as the firmware stores them: raw pixels, looked up through the preprocessing.
struct test_images {
  std::size_t count = 0;
  std::vector<std::uint8_t> pixels;  ///< count x 784
  std::vector<std::uint8_t> labels;  ///< empty for synthetic images
};

/// pixel -> model input, exactly as load_fashion_mnist computes it.
std::array<float, 256> pixel_lut() {
  std::array<float, 256> lut{};
  for (std::size_t p = 0; p < lut.size(); ++p) lut[p] = (static_cast<float>(p) / 255.0f - pixel_mean) / pixel_std;
  return lut;
}

std::vector<float> to_inputs(const test_images& t) {
  const std::array<float, 256> lut = pixel_lut();
  std::vector<float> x(t.pixels.size());
  std::transform(t.pixels.begin(), t.pixels.end(), x.begin(), [&](std::uint8_t p) { return lut[p]; });
  return x;
}

test_images synthetic_images(std::size_t count, unsigned seed) {
  test_images t;
  t.count = count;
  t.pixels.resize(count * image_pixels);
  std::mt19937 rng(seed);
  for (auto& p : t.pixels) p = static_cast<std::uint8_t>(rng() >> 24);
  return t;
}

/// The first `count` test images, with their pixels recovered exactly from the normalized
/// floats (the lookup table is strictly increasing, so each float names one pixel).
test_images fashion_mnist_images(std::size_t count) {
  const dataset test = load_fashion_mnist(split::test, count);
  check<value_error>(test.size() == count, "the test set has only ", test.size(), " images");
  const std::array<float, 256> lut = pixel_lut();
  std::map<std::uint32_t, std::uint8_t> pixel_of;
  for (std::size_t p = 0; p < lut.size(); ++p) pixel_of[std::bit_cast<std::uint32_t>(lut[p])] = static_cast<std::uint8_t>(p);
  test_images t;
  t.count = count;
  t.labels = test.labels;
  for (std::size_t i = 0; i < count * image_pixels; ++i) {
    const auto it = pixel_of.find(std::bit_cast<std::uint32_t>(test.images.data()[i]));
    check<value_error>(it != pixel_of.end(), "test image value ", test.images.data()[i], " is not a preprocessed pixel");
    t.pixels.push_back(it->second);
  }
  return t;
}

test_images load_images(std::size_t count, unsigned seed) {
  try {
    return fashion_mnist_images(count);
  } catch (const io_error& e) {
    std::printf("Fashion-MNIST not available (%s): synthetic test images\n", e.what());
    return synthetic_images(count, seed);
  }
}

/// Activation ranges for a random model: observers see a few batches of synthetic images
/// (training mode, BN on its running statistics, nothing trained), as qat.cpp calibrates.
void calibrate_on_noise(nn::module& model, unsigned seed) {
  autograd::no_grad_guard no_grad;
  model.train();
  nn::freeze_bn(model, true);
  for (unsigned b = 0; b < 4; ++b) {
    const std::vector<float> x = to_inputs(synthetic_images(16, seed + 1000 + b));
    array<float> batch(shape_t{16, 1, image_rows, image_cols});
    std::copy(x.begin(), x.end(), batch.data());
    (void)model(nn::variable(batch));
  }
  nn::freeze_bn(model, false);
  model.eval();
}

std::unique_ptr<nn::module> qat_model(const std::string& name, const std::string& checkpoint, unsigned seed) {
  std::unique_ptr<nn::module> model = make_model<w8a8>(name, seed);
  if (checkpoint.empty()) {
    calibrate_on_noise(*model, seed);
  } else {
    io::load_checkpoint(checkpoint, *model);
  }
  return model;
}

std::size_t argmax(std::span<const float> x) {
  return static_cast<std::size_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

std::string firmware_data_text(const std::string& name, const test_images& t, std::span<const float> logits) {
  const std::array<float, 256> lut = pixel_lut();
  std::string h = "// Generated by examples/export_header: test data of the firmware example. Do not edit.\n";
  h += "#pragma once\n\n#include <cstddef>\n#include <cstdint>\n\n#include \"" + name + ".hpp\"\n\n";
  h += "namespace firmware {\n\nnamespace model = ::" + name + ";\n\n";
  h += "inline constexpr std::size_t image_count = " + std::to_string(t.count) + ";\n";
  h += "inline constexpr std::size_t pixels_per_image = " + std::to_string(image_pixels) + ";\n";
  h += std::string("inline constexpr bool has_labels = ") + (t.labels.empty() ? "false" : "true") + ";\n\n";
  h += "// pixel -> model input: (pixel / 255 - mean) / std in float, as in training.\n";
  io::cpp::append_array<float>(h, "float", "pixel_to_input", lut, 4);
  h += "\n// image_count x 28 x 28 pixels, row-major.\n";
  io::cpp::append_array<std::uint8_t>(h, "std::uint8_t", "pixels", t.pixels, 28);
  const std::vector<std::uint8_t> labels = t.labels.empty() ? std::vector<std::uint8_t>(t.count, 255) : t.labels;
  h += "\n// Class of each image (255: synthetic image, no label).\n";
  io::cpp::append_array<std::uint8_t>(h, "std::uint8_t", "labels", labels, 20);
  h += "\n// Logits runtime::int8_model computed on the host: the firmware must match them bit for bit.\n";
  io::cpp::append_array<float>(h, "float", "expected_logits", logits, 5);
  return h + "\n}  // namespace firmware\n";
}

std::size_t weight_bytes(const runtime::graph& g) {
  std::size_t n = 0;
  for (const runtime::step& s : g.steps)
    std::visit([&](const auto& st) {
      if constexpr (requires { st.w; }) n += st.w.weight.size() + 4 * st.w.bias.size();
    }, s);
  return n;
}

}  // namespace

int main(int argc, char** argv) try {
  args a(argc, argv, "export_header --model cnn|mobilenet|resnet [--checkpoint FILE] --out DIR [--name NAME] "
                     "[--images 10] [--seed 1]");
  const std::string model_name = a.get("model", std::string("cnn"));
  const std::string checkpoint = a.get("checkpoint", std::string());
  const std::filesystem::path out = a.get("out", std::string("."));
  const std::string name = a.get("name", model_name);
  const std::size_t count = a.get("images", std::size_t{10});
  const unsigned seed = a.get("seed", 1u);
  a.finish();
  check<value_error>(count > 0, "--images must be positive");

  const std::unique_ptr<nn::module> model = qat_model(model_name, checkpoint, seed);
  const runtime::graph graph = runtime::build_graph(*model, array<float>(shape_t{1, 1, image_rows, image_cols}, 0.f));
  const test_images images = load_images(count, seed);

  runtime::int8_model host(graph, count);
  std::vector<float> logits(count * host.output_size());
  host.run(to_inputs(images), count, logits);

  io::export_cpp_header(out / (name + ".hpp"), graph, name);
  io::write_file_atomically(out / "firmware_data.hpp", firmware_data_text(name, images, logits));
  std::printf("%s (%s): %zu steps, %zu weight+bias bytes -> %s\n", model_name.c_str(),
              checkpoint.empty() ? "random weights" : checkpoint.c_str(), graph.steps.size(), weight_bytes(graph),
              (out / (name + ".hpp")).c_str());
  const runtime::int8_model one(graph, 1);  // what the firmware allocates besides the graph
  std::printf("batch 1: activation arena %zu bytes, convolution scratch %zu bytes\n", one.activation_bytes(),
              one.scratch_bytes());
  std::printf("host int8 predictions:");
  for (std::size_t i = 0; i < count; ++i)
    std::printf(" %zu", argmax(std::span<const float>(logits).subspan(i * host.output_size(), host.output_size())));
  std::printf("\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "export_header: %s\n", e.what());
  return 1;
}
