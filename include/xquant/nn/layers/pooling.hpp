#pragma once
// Pooling layers (no parameters): max_pool2d, avg_pool2d (count_include_pad = true) and
// global_avg_pool<Q> ([N, C, H, W] -> [N, C]). See functional/pooling.hpp.
//
// Quantization: max pooling picks input values, so its output is on the input's grid and
// needs no quantizer. An average is not on the grid: global_avg_pool<Q> with a QAT
// bundle fake-quantizes its output with Q::activation (child "activation_post_process");
// global_avg_pool<> (no_quant) is the plain FP32 op.

#include <cstddef>

#include "xquant/nn/functional/pooling.hpp"
#include "xquant/nn/layers/int8_spec.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

class max_pool2d : public module {
 public:
  /// Square window; stride 0 means stride = kernel (PyTorch's default).
  explicit max_pool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
      : options_(functional::pool2d_options::square(kernel, stride, padding)) {}
  explicit max_pool2d(const functional::pool2d_options& options) : options_(options) {}
  variable forward(const variable& x) override { return functional::max_pool2d(x, options_); }
  std::optional<layer_spec> int8_spec() override { return detail::pool_spec_of(pool_spec::kind::max, options_); }
  const functional::pool2d_options& options() const { return options_; }

 private:
  functional::pool2d_options options_;
};

class avg_pool2d : public module {
 public:
  /// Square window; stride 0 means stride = kernel (PyTorch's default).
  explicit avg_pool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
      : options_(functional::pool2d_options::square(kernel, stride, padding)) {}
  explicit avg_pool2d(const functional::pool2d_options& options) : options_(options) {}
  variable forward(const variable& x) override { return functional::avg_pool2d(x, options_); }
  std::optional<layer_spec> int8_spec() override {
    return detail::pool_spec_of(pool_spec::kind::average, options_);
  }
  const functional::pool2d_options& options() const { return options_; }

 private:
  functional::pool2d_options options_;
};

template <layer_bundle Q = no_quant>
class global_avg_pool : public module, public qat_control {
 public:
  global_avg_pool() {
    if constexpr (is_quantized_v<Q>) register_module("activation_post_process", output_fq_);
  }
  variable forward(const variable& x) override {
    if constexpr (is_quantized_v<Q>) {
      return output_fq_(functional::global_avg_pool(x));
    } else {
      return functional::global_avg_pool(x);
    }
  }
  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(output_fq_, on); }
  activation_quantizer_t<Q>& output_quantizer() { return output_fq_; }
  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("global_avg_pool");
    } else {
      pool_spec s;
      s.op = pool_spec::kind::global_average;
      s.output = detail::grid_of<typename Q::activation>(output_fq_.params());
      return s;
    }
  }

 private:
  [[no_unique_address]] activation_quantizer_t<Q> output_fq_;
};

}  // namespace xquant::nn
