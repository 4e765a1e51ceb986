// Tests of examples/common/fashion_mnist.hpp: small synthetic gzipped IDX files in a
// temporary directory, one per malformation, plus the real data set when installed.

#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/fashion_mnist.hpp"

namespace fs = std::filesystem;
using namespace xquant::examples;
using bytes = std::vector<std::uint8_t>;

namespace {

/// A fresh directory, removed with its content at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    do {
      path = fs::temp_directory_path() / ("xquant-fmnist-" + std::to_string(rd()));
    } while (!fs::create_directory(path));
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

/// An IDX file: big-endian magic and dims, then the data.
bytes idx(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const bytes& data) {
  bytes out;
  auto put = [&](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
  };
  put(magic);
  for (std::uint32_t d : dims) put(d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

bytes images_idx(std::uint32_t n, std::uint32_t rows = 28, std::uint32_t cols = 28) {
  bytes pixels(std::size_t{n} * rows * cols);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 7 % 256);
  return idx(0x803, {n, rows, cols}, pixels);
}

bytes labels_idx(const bytes& labels) {
  return idx(0x801, {static_cast<std::uint32_t>(labels.size())}, labels);
}

void write_gz(const std::string& path, const bytes& data) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, data.data(), static_cast<unsigned>(data.size())) == static_cast<int>(data.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

void write_raw(const std::string& path, const bytes& data) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()),
                                              static_cast<std::streamsize>(data.size()));
}

bytes read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return bytes(std::istreambuf_iterator<char>(in), {});
}

/// The what() of the io_error `f` throws (fails the test when it throws nothing else).
std::string io_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const xquant::io_error& e) {
    return e.what();
  }
  FAIL("expected an xquant::io_error");
  return {};
}

/// `f` throws io_error naming `file` and containing `reason`.
void check_io_error(const std::function<void()>& f, const std::string& file, const std::string& reason) {
  const std::string message = io_error_of(f);
  INFO("message: ", message);
  CHECK(message.find(file) != std::string::npos);
  CHECK(message.find(reason) != std::string::npos);
}

}  // namespace

TEST_CASE("a valid tiny split is parsed and normalized") {
  temp_dir dir;
  write_gz(dir / "t10k-images-idx3-ubyte.gz", images_idx(3));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", labels_idx({0, 9, 4}));

  const idx_images raw = read_idx_images(dir / "t10k-images-idx3-ubyte.gz");
  CHECK(raw.count == 3);
  CHECK(raw.rows == 28);
  CHECK(raw.cols == 28);
  REQUIRE(raw.pixels.size() == 3 * 784);
  CHECK(raw.pixels[1] == 7);
  CHECK(raw.pixels[2000] == 2000 * 7 % 256);

  const dataset all = load_fashion_mnist(dir.path.string(), split::test);
  CHECK(all.images.shape() == std::vector<std::size_t>{3, 1, 28, 28});
  CHECK(all.labels == bytes{0, 9, 4});
  for (std::size_t i : {0u, 1u, 37u, 785u, 2351u}) {
    const float expected = (static_cast<float>(raw.pixels[i]) / 255.0f - 0.2860f) / 0.3530f;
    CHECK(all.images.data()[i] == doctest::Approx(expected).epsilon(1e-6));
  }
  CHECK(all.images(1, 0, 0, 1) == all.images.data()[785]);  // NCHW, row-major

  const dataset two = load_fashion_mnist(dir.path.string(), split::test, 2);
  CHECK(two.images.shape() == std::vector<std::size_t>{2, 1, 28, 28});
  CHECK(two.labels == bytes{0, 9});
  CHECK(load_fashion_mnist(dir.path.string(), split::test, 100).size() == 3);  // limit > n: all

  // The train split reads the train-* files.
  check_io_error([&] { load_fashion_mnist(dir.path.string(), split::train); }, "train-images-idx3-ubyte.gz",
                 "no such file");
}

TEST_CASE("malformed files give io_error naming the file and the reason") {
  temp_dir dir;
  const std::string file = dir / "images.gz";
  auto images = [&] { read_idx_images(file); };
  auto labels = [&] { read_idx_labels(file); };

  SUBCASE("missing file") { check_io_error(images, file, "no such file"); }
  SUBCASE("a directory") {
    fs::create_directory(file);
    check_io_error(images, file, "not a regular file");
  }
  SUBCASE("not gzip") {
    write_raw(file, images_idx(2));
    check_io_error(images, file, "not a gzip file");
  }
  SUBCASE("empty file") {
    write_raw(file, {});
    check_io_error(images, file, "empty file");
  }
  SUBCASE("wrong magic: a labels file read as images") {
    write_gz(file, labels_idx({1, 2, 3}));
    check_io_error(images, file, "wrong magic number 0x00000801, expected 0x00000803");
  }
  SUBCASE("wrong magic: an images file read as labels") {
    write_gz(file, images_idx(1));
    check_io_error(labels, file, "wrong magic number 0x00000803, expected 0x00000801");
  }
  SUBCASE("images not 28x28") {
    write_gz(file, images_idx(2, 27, 28));
    check_io_error(images, file, "images are 27x28, expected 28x28");
  }
  SUBCASE("truncated: fewer pixels than the header promises") {
    bytes data = images_idx(3);
    data.resize(data.size() - 784 / 2);
    write_gz(file, data);
    check_io_error(images, file, "truncated: expected 2352 bytes of pixels, the data ends after 1960");
  }
  SUBCASE("truncated: the header itself") {
    write_gz(file, bytes{0, 0, 8, 3, 0, 0});
    check_io_error(images, file, "truncated: expected 4 bytes of header");
  }
  SUBCASE("truncated gzip stream") {
    write_gz(file, images_idx(3));
    bytes gz = read_raw(file);
    gz.resize(gz.size() / 2);
    write_raw(file, gz);
    check_io_error(images, file, "truncated gzip stream");
  }
  SUBCASE("corrupt gzip: CRC mismatch") {
    write_gz(file, images_idx(3));
    bytes gz = read_raw(file);
    gz[gz.size() - 8] ^= 0xff;  // the gzip trailer is CRC32, then the length
    write_raw(file, gz);
    check_io_error(images, file, "corrupt gzip data (zlib: incorrect data check)");
  }
  SUBCASE("corrupt gzip: invalid deflate block") {
    write_gz(file, images_idx(3));
    bytes gz = read_raw(file);
    gz[10] |= 0x06;  // first block header after the 10-byte gzip header: BTYPE = 3 (reserved)
    write_raw(file, gz);
    check_io_error(images, file, "corrupt gzip data (zlib: invalid block type)");
  }
  SUBCASE("trailing data") {
    bytes data = images_idx(2);
    data.push_back(0);
    write_gz(file, data);
    check_io_error(images, file, "trailing data");
  }
  SUBCASE("a huge count in the header is refused before allocating") {
    write_gz(file, idx(0x803, {0xffffffffu, 28, 28}, {}));
    check_io_error(images, file, "refusing to allocate");
    write_gz(file, idx(0x801, {200'000'000u}, {}));
    check_io_error(labels, file, "refusing to allocate");
  }
  SUBCASE("label out of range") {
    write_gz(file, labels_idx({0, 9, 10, 3}));
    check_io_error(labels, file, "label 10 at index 2 is not in 0..9");
  }
}

TEST_CASE("image and label counts must match") {
  temp_dir dir;
  write_gz(dir / "train-images-idx3-ubyte.gz", images_idx(3));
  write_gz(dir / "train-labels-idx1-ubyte.gz", labels_idx({1, 2}));
  const std::string message = io_error_of([&] { load_fashion_mnist(dir.path.string(), split::train); });
  INFO("message: ", message);
  CHECK(message.find(dir / "train-images-idx3-ubyte.gz" + " has 3 images") != std::string::npos);
  CHECK(message.find(dir / "train-labels-idx1-ubyte.gz" + " has 2 labels") != std::string::npos);
}

#if defined(__unix__) || defined(__APPLE__)
TEST_CASE("XQUANT_FASHION_MNIST_DIR overrides the default directory") {
  const char* old = std::getenv("XQUANT_FASHION_MNIST_DIR");
  const std::string saved = old ? old : "";
  setenv("XQUANT_FASHION_MNIST_DIR", "/some/dir", 1);
  CHECK(default_fashion_mnist_dir() == "/some/dir");
  setenv("XQUANT_FASHION_MNIST_DIR", "", 1);
  CHECK(default_fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");
  if (old) {
    setenv("XQUANT_FASHION_MNIST_DIR", saved.c_str(), 1);
  } else {
    unsetenv("XQUANT_FASHION_MNIST_DIR");
  }
}
#endif

TEST_CASE("epoch_order is a seeded permutation, different per epoch") {
  const auto a = epoch_order(1000, 0, 0);
  CHECK(std::set<std::size_t>(a.begin(), a.end()).size() == 1000);
  CHECK(*std::max_element(a.begin(), a.end()) == 999);
  CHECK(epoch_order(1000, 0, 0) == a);  // reproducible
  CHECK(epoch_order(1000, 0, 1) != a);  // reshuffled each epoch
  CHECK(epoch_order(1000, 1, 0) != a);  // depends on the seed
  // Pinned: the order must not change with the standard library or a refactoring.
  CHECK(epoch_order(10, 0, 0) == std::vector<std::size_t>{7, 3, 6, 9, 1, 4, 5, 8, 2, 0});
  CHECK(epoch_order(0, 0, 0).empty());
  CHECK(epoch_order(1, 0, 0) == std::vector<std::size_t>{0});
}

TEST_CASE("gather_batch copies the chosen items into reused arrays") {
  temp_dir dir;
  write_gz(dir / "t10k-images-idx3-ubyte.gz", images_idx(5));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", labels_idx({5, 6, 7, 8, 9}));
  const dataset data = load_fashion_mnist(dir.path.string(), split::test);

  xquant::array<float> x;
  std::vector<std::uint8_t> y;
  const std::vector<std::size_t> order{4, 0, 2, 1, 3};
  gather_batch(data, std::span(order).subspan(0, 3), x, y);
  CHECK(x.shape() == std::vector<std::size_t>{3, 1, 28, 28});
  CHECK(y == bytes{9, 5, 7});
  CHECK(x(0, 0, 5, 6) == data.images(4, 0, 5, 6));
  CHECK(x(2, 0, 27, 27) == data.images(2, 0, 27, 27));

  const float* storage = x.data();
  gather_batch(data, std::span(order).subspan(1, 3), x, y);  // same batch size: no reallocation
  CHECK(x.data() == storage);
  CHECK(y == bytes{5, 7, 6});
  gather_batch(data, std::span(order).subspan(3), x, y);  // short last batch
  CHECK(x.shape() == std::vector<std::size_t>{2, 1, 28, 28});
  CHECK(y == bytes{6, 8});

  const std::vector<std::size_t> bad{7};
  CHECK_THROWS_AS(gather_batch(data, bad, x, y), xquant::shape_error);
}

TEST_CASE("the installed data set: 10000 test labels, 1000 per class") {
  const std::string dir = default_fashion_mnist_dir();
  const auto [images_path, labels_path] = fashion_mnist_files(dir, split::test);
  if (!fs::exists(labels_path) || !fs::exists(images_path)) {
    MESSAGE("Fashion-MNIST not installed in ", dir, " (apt install dataset-fashion-mnist); skipped");
    return;
  }
  const std::vector<std::uint8_t> labels = read_idx_labels(labels_path);
  REQUIRE(labels.size() == 10000);
  std::vector<int> per_class(10);
  for (std::uint8_t l : labels) ++per_class[l];
  CHECK(per_class == std::vector<int>(10, 1000));

  const idx_images images = read_idx_images(images_path);
  CHECK(images.count == 10000);
  CHECK(images.pixels.size() == 10000u * 28 * 28);
}
