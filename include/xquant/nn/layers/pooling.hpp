#pragma once
// Pooling layers (no parameters): max_pool2d, avg_pool2d (count_include_pad = true) and
// global_avg_pool ([N, C, H, W] -> [N, C]). See functional/pooling.hpp.

#include <cstddef>

#include "xquant/nn/functional/pooling.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

class max_pool2d : public module {
 public:
  /// Square window; stride 0 means stride = kernel (PyTorch's default).
  explicit max_pool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
      : options_(functional::pool2d_options::square(kernel, stride, padding)) {}
  explicit max_pool2d(const functional::pool2d_options& options) : options_(options) {}
  variable forward(const variable& x) override { return functional::max_pool2d(x, options_); }
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
  const functional::pool2d_options& options() const { return options_; }

 private:
  functional::pool2d_options options_;
};

class global_avg_pool : public module {
 public:
  variable forward(const variable& x) override { return functional::global_avg_pool(x); }
};

}  // namespace xquant::nn
