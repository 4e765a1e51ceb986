#pragma once
// Shared by the io tests: a tiny model built from the generic autograd ops, a temporary
// directory, and raw file helpers for crafting malformed checkpoints.

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "xquant/autograd/ops.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/io/crc32.hpp"
#include "xquant/nn/module.hpp"

namespace {

using xquant::array;
using xquant::shape_t;
using xquant::autograd::variable;

/// pred = sum(weight * x) + bias for one sample x of `features` values.
struct linear_unit : xquant::nn::module {
  variable weight, bias;
  explicit linear_unit(std::size_t features, float init)
      : weight(array<float>(shape_t{features}, init)), bias(array<float>({1}, init / 2)) {
    for (std::size_t i = 0; i < features; ++i) weight.value()(i) = init * static_cast<float>(i + 1) / 4;
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  variable forward(const variable& x) override {
    using namespace xquant::autograd;
    return add(reshape(sum(mul(weight, reshape(x, shape_t{weight.size()}))), shape_t{1}), bias);
  }
};

/// head (a child module) plus a buffer counting the samples seen: parameters
/// "head.weight" [features], "head.bias" [1], buffer "seen" [1].
struct tiny_model : xquant::nn::module {
  linear_unit head;
  array<float> seen = array<float>({1}, 0.0f);
  explicit tiny_model(std::size_t features = 3, float init = 0.5f) : head(features, init) {
    register_module("head", head);
    register_buffer("seen", seen);
  }
  variable forward(const variable& x) override { return head(x); }
};

/// All parameter and buffer values, flattened, for bit-exact comparisons.
inline std::vector<float> snapshot(xquant::nn::module& m) {
  std::vector<float> out;
  for (auto& p : m.parameters()) out.insert(out.end(), p.var->value().begin(), p.var->value().end());
  for (auto& b : m.buffers()) out.insert(out.end(), b.value->begin(), b.value->end());
  return out;
}

/// A fresh directory under the system temp directory, removed with its content.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("xquant-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
  std::size_t entries() const {
    return static_cast<std::size_t>(
        std::distance(std::filesystem::directory_iterator(path), std::filesystem::directory_iterator()));
  }
};

inline std::vector<unsigned char> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Writes the first n bytes to a new file at p. The old file is removed first, not
/// truncated: ext4 flushes a file that was truncated to zero and rewritten when it is
/// closed, which would make the many-variants tests below wait for the disk.
inline void write_bytes(const std::filesystem::path& p, const std::vector<unsigned char>& bytes, std::size_t n) {
  std::filesystem::remove(p);
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
}
inline void write_bytes(const std::filesystem::path& p, const std::vector<unsigned char>& bytes) {
  write_bytes(p, bytes, bytes.size());
}

inline std::uint64_t header_size_of(const std::vector<unsigned char>& f) {
  std::uint64_t h = 0;
  for (int i = 7; i >= 0; --i) h = (h << 8) | f[8 + static_cast<std::size_t>(i)];
  return h;
}

inline nlohmann::json header_of(const std::vector<unsigned char>& f) {
  const auto h = header_size_of(f);
  return nlohmann::json::parse(f.begin() + 24, f.begin() + 24 + static_cast<std::ptrdiff_t>(h));
}

/// The file with its JSON header replaced by `header_text` (padded, with a correct
/// length and CRC): a well-formed container around whatever the header says.
inline std::vector<unsigned char> with_header_text(const std::vector<unsigned char>& f, std::string header_text) {
  const std::size_t old_data_start = 24 + static_cast<std::size_t>(header_size_of(f));
  while ((24 + header_text.size()) % 64 != 0) header_text.push_back(' ');
  const std::size_t h = header_text.size();
  std::vector<unsigned char> out(24 + h + (f.size() - old_data_start));
  std::copy(f.begin(), f.begin() + 24, out.begin());
  for (std::size_t i = 0; i < 8; ++i) out[8 + i] = static_cast<unsigned char>(std::uint64_t{h} >> (8 * i));
  const std::uint32_t crc = xquant::io::crc32(header_text.data(), h);
  for (std::size_t i = 0; i < 4; ++i) out[16 + i] = static_cast<unsigned char>(crc >> (8 * i));
  std::copy(header_text.begin(), header_text.end(), out.begin() + 24);
  std::copy(f.begin() + static_cast<std::ptrdiff_t>(old_data_start), f.end(),
            out.begin() + static_cast<std::ptrdiff_t>(24 + h));
  return out;
}

inline std::vector<unsigned char> with_header(const std::vector<unsigned char>& f, const nlohmann::json& header) {
  return with_header_text(f, header.dump());
}

}  // namespace
