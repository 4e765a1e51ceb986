#pragma once
// Fashion-MNIST reader for the examples, benchmarks and training programs.
//
// Reads the gzipped IDX files of Debian's dataset-fashion-mnist
// (/usr/share/datasets/fashion-mnist, see /work/shared/reference-models.md):
//
//   {train,t10k}-images-idx3-ubyte.gz   magic 0x00000803, dims n, 28, 28, then n*28*28 bytes
//   {train,t10k}-labels-idx1-ubyte.gz   magic 0x00000801, dim n, then n bytes (0..9)
//
// Header fields are big-endian uint32. This lives under examples/ rather than in the
// library because it needs zlib, which the core library must not depend on.
//
// Every malformed input throws xquant::io_error whose message starts with the file's path
// and says what is wrong: missing file, not gzip, corrupt gzip stream (including a CRC
// mismatch), truncated (fewer bytes than the header promises), wrong magic number, images
// not 28x28, an absurd element count (> max_idx_elements, so a malicious header cannot
// make us allocate gigabytes), trailing data, labels > 9, image/label count mismatch.
//
// Trailing data policy: bytes after the n items the header announces are an error, not
// ignored. IDX has no trailer, so extra data means the header's count is wrong (or two
// files were concatenated) and silently dropping it would hide that. Reading to the end
// also makes zlib verify the gzip CRC. (zlib itself skips non-gzip bytes after the last
// gzip member; those are outside the IDX stream and are not detected.)

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"

namespace xquant::examples {

inline constexpr std::size_t image_rows = 28;
inline constexpr std::size_t image_cols = 28;
inline constexpr std::size_t image_pixels = image_rows * image_cols;
inline constexpr int num_classes = 10;
/// Preprocessing of the reference models: x = (pixel / 255 - mean) / std.
inline constexpr float pixel_mean = 0.2860f;
inline constexpr float pixel_std = 0.3530f;
/// Largest element count a header may claim (the training images are 4.7e7).
inline constexpr std::uint64_t max_idx_elements = 100'000'000;

/// Raw images of an IDX3 file: count x rows x cols bytes, row-major.
struct idx_images {
  std::size_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;
};

enum class split { train, test };

/// A loaded split: images N x 1 x 28 x 28, normalized; labels 0..9.
struct dataset {
  array<float> images;
  std::vector<std::uint8_t> labels;
  std::size_t size() const { return labels.size(); }
};

namespace detail {

/// A gzFile that closes itself and reports every problem as io_error naming the file.
class gz_file {
 public:
  explicit gz_file(const std::string& path) : path_(path) {
    std::error_code ec;
    check<io_error>(std::filesystem::exists(path, ec), path,
                    ": no such file (install Debian's dataset-fashion-mnist or set XQUANT_FASHION_MNIST_DIR)");
    check<io_error>(std::filesystem::is_regular_file(path, ec), path, ": not a regular file");
    file_.reset(gzopen(path.c_str(), "rb"));
    check<io_error>(file_ != nullptr, path, ": cannot open");
    // zlib reads a plain (or empty) file transparently; we want the .gz files only.
    if (gzdirect(file_.get()) != 0) {
      throw_if_zlib_error();
      fail(std::filesystem::file_size(path, ec) == 0 ? "empty file" : "not a gzip file",
           " (expected the gzipped IDX files)");
    }
  }

  /// Reads exactly out.size() bytes of `what`, or throws (truncated or corrupt).
  void read_exact(std::span<std::uint8_t> out, const char* what) {
    const std::size_t got = read_some(out);
    if (got < out.size()) {
      throw_if_zlib_error();
      fail("truncated: expected ", out.size(), " bytes of ", what, ", the data ends after ", got);
    }
  }

  /// After the last expected byte: the stream must end here, with a valid CRC.
  void expect_end() {
    std::array<std::uint8_t, 1> extra{};
    const std::size_t got = read_some(extra);
    throw_if_zlib_error();
    check<io_error>(got == 0, path_,
                    ": trailing data after the items the header announces (wrong count in the header?)");
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    xquant::detail::throw_error<io_error>(path_, ": ", parts...);
  }

 private:
  // gzread takes an unsigned int count, so large reads go in chunks.
  std::size_t read_some(std::span<std::uint8_t> out) {
    constexpr std::size_t chunk = std::size_t{1} << 20;
    std::size_t done = 0;
    while (done < out.size()) {
      const auto want = static_cast<unsigned>(std::min(chunk, out.size() - done));
      const int n = gzread(file_.get(), out.data() + done, want);
      if (n <= 0) break;  // end of data (0) or error (-1); the caller asks gzerror
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  void throw_if_zlib_error() const {
    int code = Z_OK;
    std::string_view message = gzerror(file_.get(), &code);
    if (code == Z_OK) return;
    // zlib prefixes its messages with the path, which ours already starts with.
    if (message.starts_with(path_ + ": ")) message.remove_prefix(path_.size() + 2);
    if (code == Z_BUF_ERROR) fail("truncated gzip stream (zlib: ", message, ")");
    if (code == Z_ERRNO) fail("read error (", message, ")");
    fail("corrupt gzip data (zlib: ", message, ")");
  }

  std::string path_;
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file_{nullptr, gzclose};
};

inline std::uint32_t big_endian_u32(std::span<const std::uint8_t> b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
}

/// Reads the magic number and `dims` dimensions; checks the magic and the total size.
inline std::vector<std::size_t> read_idx_header(gz_file& f, std::uint32_t magic, std::size_t dims) {
  std::array<std::uint8_t, 4> word{};
  f.read_exact(word, "magic number");
  const std::uint32_t got = big_endian_u32(word);
  if (got != magic) {
    char hex[2][11];
    std::snprintf(hex[0], sizeof hex[0], "0x%08x", static_cast<unsigned>(got));
    std::snprintf(hex[1], sizeof hex[1], "0x%08x", static_cast<unsigned>(magic));
    f.fail("wrong magic number ", hex[0], ", expected ", hex[1],
           dims == 1 ? " (an IDX labels file: unsigned bytes, 1 dimension)"
                     : " (an IDX images file: unsigned bytes, 3 dimensions)");
  }
  std::vector<std::size_t> shape;
  std::uint64_t elements = 1;
  for (std::size_t d = 0; d < dims; ++d) {
    f.read_exact(word, "header");
    shape.push_back(big_endian_u32(word));
    elements *= shape.back();  // each factor < 2^32 and we stop early, so this cannot overflow
    if (elements > max_idx_elements) {
      f.fail("header claims more than ", max_idx_elements, " elements, refusing to allocate");
    }
  }
  return shape;
}

}  // namespace detail

/// The raw uint8 images of a gzipped IDX3 file; each must be 28 x 28.
inline idx_images read_idx_images(const std::string& path) {
  detail::gz_file f(path);
  const auto shape = detail::read_idx_header(f, 0x00000803, 3);
  if (shape[1] != image_rows || shape[2] != image_cols) {
    f.fail("images are ", shape[1], "x", shape[2], ", expected ", image_rows, "x", image_cols);
  }
  idx_images out{shape[0], shape[1], shape[2], std::vector<std::uint8_t>(shape[0] * image_pixels)};
  f.read_exact(out.pixels, "pixels");
  f.expect_end();
  return out;
}

/// The labels of a gzipped IDX1 file; each must be < classes.
inline std::vector<std::uint8_t> read_idx_labels(const std::string& path, int classes = num_classes) {
  detail::gz_file f(path);
  std::vector<std::uint8_t> labels(detail::read_idx_header(f, 0x00000801, 1)[0]);
  f.read_exact(labels, "labels");
  f.expect_end();
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= classes) f.fail("label ", int{labels[i]}, " at index ", i, " is not in 0..", classes - 1);
  }
  return labels;
}

/// XQUANT_FASHION_MNIST_DIR if set and not empty, else Debian's install directory.
inline std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("XQUANT_FASHION_MNIST_DIR");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

/// Paths of the images and labels files of a split in `dir`.
inline std::pair<std::string, std::string> fashion_mnist_files(const std::string& dir, split which) {
  const std::filesystem::path base(dir);
  const std::string prefix = which == split::train ? "train" : "t10k";
  return {(base / (prefix + "-images-idx3-ubyte.gz")).string(), (base / (prefix + "-labels-idx1-ubyte.gz")).string()};
}

/// Loads the first min(limit, n) items of a split, normalized as the reference models
/// expect: x = (pixel / 255 - 0.2860) / 0.3530. Both files are read and checked in full.
inline dataset load_fashion_mnist(const std::string& dir, split which,
                                  std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  const auto [images_path, labels_path] = fashion_mnist_files(dir, which);
  const idx_images raw = read_idx_images(images_path);
  std::vector<std::uint8_t> labels = read_idx_labels(labels_path);
  check<io_error>(raw.count == labels.size(), images_path, " has ", raw.count, " images but ", labels_path,
                  " has ", labels.size(), " labels");

  const std::size_t n = std::min(limit, raw.count);
  std::array<float, 256> lut{};  // 256 possible pixels: normalize once, then look up
  for (std::size_t p = 0; p < lut.size(); ++p) lut[p] = (static_cast<float>(p) / 255.0f - pixel_mean) / pixel_std;
  dataset out{array<float>(shape_t{n, 1, image_rows, image_cols}), std::move(labels)};
  out.labels.resize(n);
  std::transform(raw.pixels.begin(), raw.pixels.begin() + static_cast<std::ptrdiff_t>(n * image_pixels),
                 out.images.data(), [&](std::uint8_t p) { return lut[p]; });
  return out;
}

inline dataset load_fashion_mnist(split which, std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  return load_fashion_mnist(default_fashion_mnist_dir(), which, limit);
}

// --- batching -----------------------------------------------------------------------
//
//   for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
//     const auto order = epoch_order(train.size(), seed, epoch);
//     for (std::size_t b = 0; b < order.size(); b += batch)
//       gather_batch(train, std::span(order).subspan(b, std::min(batch, order.size() - b)), x, y);
//   }

namespace detail {

// Uniform in [0, bound) without modulo bias: reject the 2^32 mod bound lowest outputs.
// (std::uniform_int_distribution and std::shuffle are implementation-defined, so they
// would give libstdc++ and libc++ users different orders for the same seed; mt19937's
// output sequence is fixed by the standard.)
inline std::uint32_t uniform_below(std::mt19937& rng, std::uint32_t bound) {
  const std::uint32_t threshold = static_cast<std::uint32_t>(-bound) % bound;
  for (;;) {
    const auto r = static_cast<std::uint32_t>(rng());
    if (r >= threshold) return r % bound;
  }
}

}  // namespace detail

/// A permutation of 0..n-1 for `epoch`: Fisher-Yates with std::mt19937 seeded by
/// (seed, epoch). Each epoch's order depends only on (seed, epoch), so a resumed run
/// sees the same orders, and it is the same with every standard library.
inline std::vector<std::size_t> epoch_order(std::size_t n, std::uint32_t seed, std::size_t epoch) {
  check(n <= std::numeric_limits<std::uint32_t>::max(), "epoch_order: n = ", n, " is too large");
  std::seed_seq seq{seed, static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(static_cast<std::uint64_t>(epoch) >> 32)};
  std::mt19937 rng(seq);
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  for (std::size_t i = n; i > 1; --i) {
    std::swap(order[i - 1], order[detail::uniform_below(rng, static_cast<std::uint32_t>(i))]);
  }
  return order;
}

/// Copies the items `indices` of `data` into `images` and `labels`, resized to k items
/// (a no-op once allocated, except for a short last batch).
inline void gather_batch(const dataset& data, std::span<const std::size_t> indices, array<float>& images,
                         std::vector<std::uint8_t>& labels) {
  const std::size_t k = indices.size();
  images.resize(shape_t{k, 1, image_rows, image_cols});  // no-op when the shape is unchanged
  labels.resize(k);
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t i = indices[j];
    check<shape_error>(i < data.size(), "gather_batch: index ", i, " out of range for ", data.size(), " items");
    std::copy_n(data.images.data() + i * image_pixels, image_pixels, images.data() + j * image_pixels);
    labels[j] = data.labels[i];
  }
}

}  // namespace xquant::examples
