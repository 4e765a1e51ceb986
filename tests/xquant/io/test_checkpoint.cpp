#include <doctest/doctest.h>

#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint_test_util.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/optim/adam.hpp"
#include "xquant/optim/sgd.hpp"

using namespace xquant;
using nlohmann::json;

namespace {

/// A model with distinctive values, an SGD optimizer that has taken two steps, and
/// their checkpoint at `path`.
struct saved_fixture {
  tiny_model model{3, 0.75f};
  optim::sgd opt{model.parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3}};

  explicit saved_fixture(const std::filesystem::path& path) {
    for (int s = 0; s < 2; ++s) {
      model.head.weight.grad() = array<float>{0.5f, -1.0f, 0.25f};
      model.head.bias.grad() = array<float>{1.0f};
      opt.step();
    }
    model.seen(0) = 42.0f;
    io::save_checkpoint(path, model, opt, {{"epoch", 3}, {"seed", 7}, {"recipe", "sgd"}});
  }
};

/// Loading `path` throws io_error whose message contains `expected`, and leaves a
/// fresh model and optimizer untouched.
void check_rejected(const std::filesystem::path& path, const std::string& expected, bool with_optimizer = true) {
  tiny_model m(3, 0.25f);
  optim::sgd o(m.parameters(), {.lr = 0.1, .momentum = 0.9});
  const auto before = snapshot(m);
  std::string message;
  try {
    if (with_optimizer) {
      io::load_checkpoint(path, m, o);
    } else {
      io::load_checkpoint(path, m);
    }
  } catch (const io_error& e) {
    message = e.what();
  }
  INFO("expected an io_error containing: ", expected);
  CHECK(message.find(expected) != std::string::npos);
  CHECK(message.find(path.string()) != std::string::npos);
  CHECK(snapshot(m) == before);
  CHECK(o.step_count(0) == 0);
  CHECK(o.lr() == 0.1);
}

}  // namespace

TEST_CASE("checkpoint round trip: parameters, buffers, optimizer state, lr and metadata") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  saved.opt.set_lr(0.1);

  tiny_model fresh(3, -2.0f);
  optim::sgd opt(fresh.parameters(), {.lr = 0.5, .momentum = 0.9, .weight_decay = 1e-3});
  const json meta = io::load_checkpoint(path, fresh, opt);
  CHECK(meta == json{{"epoch", 3}, {"seed", 7}, {"recipe", "sgd"}});
  CHECK(snapshot(fresh) == snapshot(saved.model));
  CHECK(opt.lr() == 0.1);
  CHECK(opt.step_count(0) == 2);
  CHECK(opt.step_count(1) == 2);
  const auto a = saved.opt.state(), b = opt.state();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(*a[i].value == *b[i].value);

  // Without an optimizer only the model is loaded.
  tiny_model weights_only(3, 1.0f);
  CHECK(io::load_checkpoint(path, weights_only)["epoch"] == 3);
  CHECK(snapshot(weights_only) == snapshot(saved.model));
  CHECK(io::read_checkpoint_metadata(path)["recipe"] == "sgd");
}

TEST_CASE("checkpoint layout: magic, preamble, header, 64-byte aligned tensors") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  CHECK(std::memcmp(f.data(), "XQCKPT\0\1", 8) == 0);
  const std::uint64_t h = header_size_of(f);
  CHECK((24 + h) % 64 == 0);
  const json header = header_of(f);
  CHECK(header["format"] == "xquant.checkpoint");
  CHECK(header["version"] == 1);
  CHECK(f.size() == 24 + h + header["data_size"].get<std::uint64_t>());
  CHECK(header["parameters"].size() == 2);
  CHECK(header["parameters"][0]["name"] == "head.weight");
  CHECK(header["parameters"][0]["shape"] == json::array({3}));
  CHECK(header["parameters"][0]["dtype"] == "float32");
  CHECK(header["parameters"][0]["size"] == 12);
  CHECK(header["buffers"][0]["name"] == "seen");
  CHECK(header["optimizer"]["type"] == "sgd");
  CHECK(header["optimizer"]["hyper_parameters"]["momentum"] == 0.9);
  CHECK(header["optimizer"]["counters"]["head.bias.step"] == 2);
  CHECK(header["optimizer"]["state"][0]["name"] == "head.weight.momentum_buffer");
  // Each tensor is at a 64-byte aligned file offset and holds the little-endian floats.
  for (const char* section : {"parameters", "buffers"}) {
    for (const auto& t : header[section]) {
      const std::uint64_t at = 24 + h + t["offset"].get<std::uint64_t>();
      CHECK(at % 64 == 0);
      array<float>* value = nullptr;
      for (auto& p : saved.model.parameters()) {
        if (p.name == t["name"]) value = &p.var->value();
      }
      for (auto& b : saved.model.buffers()) {
        if (b.name == t["name"]) value = b.value;
      }
      REQUIRE(value != nullptr);
      for (std::size_t i = 0; i < value->size(); ++i) {
        std::uint32_t bits = 0;
        for (int k = 3; k >= 0; --k) bits = (bits << 8) | f[at + 4 * i + static_cast<std::size_t>(k)];
        CHECK(std::bit_cast<float>(bits) == value->data()[i]);
      }
    }
  }
}

TEST_CASE("the big-endian conversion path swaps bytes and round-trips") {
  const float values[3] = {1.0f, -2.5f, 3.14159f};
  unsigned char native[12], swapped[12];
  io::detail::host_to_le<std::endian::little>(values, 3, native);
  io::detail::host_to_le<std::endian::big>(values, 3, swapped);
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 4; ++k) CHECK(swapped[4 * i + k] == native[4 * i + 3 - k]);
  }
  float back[3];
  io::detail::le_to_host<std::endian::big>(swapped, 3, back);
  CHECK(std::memcmp(back, values, sizeof values) == 0);
}

TEST_CASE("a checkpoint truncated at any length is rejected") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  const auto cut = dir / "cut.xqckpt";
  for (std::size_t n = 0; n < f.size(); ++n) {
    CAPTURE(n);
    write_bytes(cut, f, n);
    check_rejected(cut, "truncated");
  }
  // One extra byte at the end is corruption too.
  auto longer = f;
  longer.push_back(0);
  write_bytes(cut, longer);
  check_rejected(cut, "unexpected bytes after the data section");
}

TEST_CASE("a flipped byte anywhere in a checkpoint is detected") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  const std::size_t data_start = 24 + static_cast<std::size_t>(header_size_of(f));
  const auto bad = dir / "bad.xqckpt";
  for (std::size_t i = 0; i < f.size(); ++i) {
    CAPTURE(i);
    auto g = f;
    g[i] ^= (i % 2 == 0) ? 0x01 : 0x80;
    write_bytes(bad, g);
    const char* expected = i < 8                ? "wrong magic"
                           : i < 16             ? ""  // header length: truncated or checksum
                           : i < 20             ? "header checksum mismatch"
                           : i < 24             ? "reserved"
                           : i < data_start     ? "header checksum mismatch"
                                                : "corrupt file";
    check_rejected(bad, expected);
  }
}

TEST_CASE("wrong magic, format and version") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  const auto bad = dir / "bad.xqckpt";

  auto g = f;
  std::memcpy(g.data(), "PK\3\4\0\0\0\0", 8);
  write_bytes(bad, g);
  check_rejected(bad, "not an xquant checkpoint (wrong magic bytes)");

  json h = header_of(f);
  h["version"] = 2;
  write_bytes(bad, with_header(f, h));
  check_rejected(bad, "unsupported version 2 (this build reads version 1)");

  h = header_of(f);
  h["format"] = "safetensors";
  write_bytes(bad, with_header(f, h));
  check_rejected(bad, "header format is \"safetensors\", expected \"xquant.checkpoint\"");

  h = header_of(f);
  h.erase("version");
  write_bytes(bad, with_header(f, h));
  check_rejected(bad, "header has no \"version\"");

  write_bytes(bad, with_header_text(f, "{\"format\": \"xquant.checkpoint\", \"version\": 1,"));
  check_rejected(bad, "header is not valid JSON");

  write_bytes(bad, with_header_text(f, "[1, 2, 3]"));
  check_rejected(bad, "header must be a JSON object");
}

TEST_CASE("a header that lies about the data is rejected") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  const json original = header_of(f);
  const auto bad = dir / "bad.xqckpt";
  auto reject = [&](auto&& mutate, const std::string& expected) {
    json h = original;
    mutate(h);
    write_bytes(bad, with_header(f, h));
    check_rejected(bad, expected);
  };
  auto& w = original["parameters"][0];  // head.weight, 3 floats at offset 0
  REQUIRE(w["name"] == "head.weight");
  (void)w;

  reject([](json& h) { h["parameters"][0]["offset"] = 4; }, "parameter 'head.weight': offset 4 is not a multiple of 64");
  reject([](json& h) { h["parameters"][0]["offset"] = 1 << 20; }, "parameter 'head.weight': bytes [1048576");
  reject([](json& h) { h["parameters"][0]["offset"] = -64; }, "\"offset\" must be a non-negative integer, got -64");
  reject([](json& h) { h["parameters"][0]["offset"] = 64.0; }, "\"offset\" must be a non-negative integer");
  reject([](json& h) { h["parameters"][0]["offset"] = 18446744073709551552ull; }, "outside the data section");
  reject([](json& h) { h["parameters"][0]["shape"] = {4}; },
         "parameter 'head.weight': size 12 bytes does not match shape [4] of float32 (16 bytes)");
  reject([](json& h) { h["parameters"][0]["shape"] = {1ull << 40, 1ull << 40}; }, "is too large");
  reject([](json& h) { h["parameters"][0]["shape"] = "3"; }, "\"shape\" must be an array");
  reject([](json& h) { h["parameters"][0]["size"] = 1ull << 62; }, "does not match shape");
  reject([](json& h) { h["parameters"][0]["dtype"] = "float16"; },
         "parameter 'head.weight': dtype 'float16' is not supported (only float32)");
  reject([](json& h) { h["parameters"][0].erase("crc32"); }, "parameter 'head.weight' has no \"crc32\"");
  reject([](json& h) { h["parameters"][0]["crc32"] = h["parameters"][0]["crc32"].get<std::uint32_t>() ^ 1u; },
         "parameter 'head.weight': data checksum mismatch");
  reject([](json& h) { h["parameters"][1]["offset"] = 0; }, "overlap");
  reject([](json& h) { h["data_size"] = h["data_size"].get<std::uint64_t>() + 64; }, "truncated");
  reject([](json& h) { h["data_size"] = h["data_size"].get<std::uint64_t>() - 4; }, "unexpected bytes");
  reject([](json& h) { h.erase("parameters"); }, "header has no \"parameters\"");
  reject([](json& h) { h["parameters"] = json::object(); }, "\"parameters\" must be a JSON array");
  reject([](json& h) { h["parameters"][0] = 17; }, "parameter entry 0 must be a JSON object");
  reject([](json& h) { h["parameters"][0]["name"] = ""; }, "\"name\" must be a non-empty string");
  reject([](json& h) { h["parameters"][1]["name"] = "head.weight"; },
         "two entries of \"parameters\" are named 'head.weight'");
  reject([](json& h) { h["metadata"] = json::array(); }, "\"metadata\" must be a JSON object");
  reject([](json& h) { h["optimizer"]["lr"] = -1; }, "optimizer \"lr\" must be a finite number >= 0");
  reject([](json& h) { h["optimizer"]["counters"]["head.bias.step"] = -2; }, "must be a non-negative integer");
  // A lie about a tensor's shape that stays self-consistent is caught by the model.
  reject(
      [](json& h) {
        h["parameters"][0]["shape"] = {1, 3};
      },
      "parameter 'head.weight': file has [1, 3], model has [3]");
}

TEST_CASE("names that do not match the model are rejected") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  const json original = header_of(f);
  const auto bad = dir / "bad.xqckpt";
  auto reject = [&](auto&& mutate, const std::string& expected, bool with_optimizer = true) {
    json h = original;
    mutate(h);
    write_bytes(bad, with_header(f, h));
    check_rejected(bad, expected, with_optimizer);
  };
  reject([](json& h) { h["parameters"][1]["name"] = "head.b"; },
         "parameter 'head.bias' is missing from the checkpoint");
  reject(
      [](json& h) {
        h["parameters"].push_back(
            {{"name", "tail.weight"}, {"dtype", "float32"}, {"shape", {0}}, {"offset", 0}, {"size", 0}, {"crc32", 0}});
      },
      "checkpoint has parameter 'tail.weight', which the model does not have");
  reject([](json& h) { h["buffers"][0]["name"] = "count"; }, "buffer 'seen' is missing from the checkpoint");
  reject([](json& h) { h["optimizer"]["state"][0]["name"] = "head.w.momentum_buffer"; },
         "optimizer state 'head.weight.momentum_buffer' is missing from the checkpoint");
  reject([](json& h) { h["optimizer"]["counters"].erase("head.bias.step"); },
         "optimizer counter 'head.bias.step' is missing from the checkpoint");
  reject([](json& h) { h["optimizer"]["counters"]["head.extra.step"] = 1; },
         "checkpoint has optimizer counter 'head.extra.step', which the optimizer does not have");
  // Declaring fewer tensors leaves their bytes unexplained: corruption.
  reject([](json& h) { h["optimizer"] = nullptr; }, "nonzero padding");
  reject([](json& h) { h["optimizer"]["type"] = "adam"; }, "the checkpoint holds adam state, the optimizer is sgd");
  // Without an optimizer to restore, the optimizer section is not consulted.
  tiny_model m;
  json h = original;
  h["optimizer"]["type"] = "adam";
  write_bytes(bad, with_header(f, h));
  CHECK_NOTHROW(io::load_checkpoint(bad, m));
  // A weights-only checkpoint cannot restore an optimizer.
  io::save_checkpoint(bad, m);
  check_rejected(bad, "the checkpoint holds no optimizer state");
}

TEST_CASE("a model or optimizer of another shape is rejected with both shapes") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  tiny_model wider(5);
  const auto before = snapshot(wider);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, wider),
                       doctest::Contains("parameter 'head.weight': file has [3], model has [5]"), io_error);
  CHECK(snapshot(wider) == before);

  tiny_model same;
  optim::sgd no_momentum(same.parameters(), {.lr = 0.1});
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, same, no_momentum),
                       doctest::Contains("checkpoint has optimizer state 'head.weight.momentum_buffer', which the "
                                         "optimizer does not have"),
                       io_error);
  optim::adam adam(same.parameters(), {});
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, same, adam), doctest::Contains("holds sgd state, the optimizer is adam"),
                       io_error);
}

TEST_CASE("files that are not checkpoints") {
  temp_dir dir;
  CHECK_THROWS_WITH_AS(io::read_checkpoint_metadata(dir / "missing.xqckpt"),
                       doctest::Contains("No such file or directory"), io_error);
  CHECK_THROWS_WITH_AS(io::read_checkpoint_metadata(dir.path), doctest::Contains("not a regular file"), io_error);
  const auto text = dir / "notes.txt";
  write_bytes(text, std::vector<unsigned char>(100, 'a'));
  CHECK_THROWS_WITH_AS(io::read_checkpoint_metadata(text), doctest::Contains("wrong magic"), io_error);
}

TEST_CASE("metadata must be a JSON object") {
  temp_dir dir;
  tiny_model m;
  CHECK_THROWS_AS(io::save_checkpoint(dir / "x", m, json::array({1, 2})), value_error);
  CHECK_THROWS_AS(io::save_checkpoint(dir / "x", m, json{{"name", std::string("\xff\xfe")}}), value_error);
  CHECK(dir.entries() == 0);
}

TEST_CASE("saving is atomic") {
  temp_dir dir;
  tiny_model m;

  SUBCASE("into a directory that does not exist: io_error, nothing created") {
    const auto target = dir / "no-such-dir" / "ck.xqckpt";
    CHECK_THROWS_WITH_AS(io::save_checkpoint(target, m), doctest::Contains("no-such-dir"), io_error);
    CHECK_FALSE(std::filesystem::exists(dir / "no-such-dir"));
    CHECK(dir.entries() == 0);
  }

  SUBCASE("a failed write leaves the previous checkpoint intact and no temporary") {
    const auto target = dir / "ck.xqckpt";
    io::save_checkpoint(target, m, {{"version", "old"}});
    const auto old_bytes = read_bytes(target);
    m.head.weight.value()(0) = 123.0f;

    // Make the write fail half-way: the file size limit stops it with EFBIG.
    rlimit saved_limit{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_limit) == 0);
    auto* const saved_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = saved_limit;
    small.rlim_cur = 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      io::save_checkpoint(target, m, {{"version", "new"}});
    } catch (const io_error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved_limit);
    std::signal(SIGXFSZ, saved_handler);

    CHECK(message.find("cannot write") != std::string::npos);
    CHECK(read_bytes(target) == old_bytes);
    CHECK(dir.entries() == 1);
    tiny_model check_model;
    CHECK(io::load_checkpoint(target, check_model)["version"] == "old");
  }

  SUBCASE("the target is a directory: the rename fails, no temporary remains") {
    std::filesystem::create_directory(dir / "ck.xqckpt");
    CHECK_THROWS_AS(io::save_checkpoint(dir / "ck.xqckpt", m), io_error);
    CHECK(dir.entries() == 1);
  }

  SUBCASE("a successful save replaces the previous file") {
    const auto target = dir / "ck.xqckpt";
    io::save_checkpoint(target, m, {{"version", "old"}});
    io::save_checkpoint(target, m, {{"version", "new"}});
    CHECK(io::read_checkpoint_metadata(target)["version"] == "new");
    CHECK(dir.entries() == 1);
  }
}

TEST_CASE("a deeply nested header is rejected, not recursed into") {
  temp_dir dir;
  const auto path = dir / "ck.xqckpt";
  saved_fixture saved(path);
  const auto f = read_bytes(path);
  std::string text = header_of(f).dump();
  const std::size_t depth = 100000;
  const std::string deep = "\"metadata\":" + std::string(depth, '[') + std::string(depth, ']');
  const auto at = text.find("\"metadata\":");
  REQUIRE(at != std::string::npos);
  text.replace(at, text.find('}', at) + 1 - at, deep);  // metadata was {"epoch":3,...}
  const auto bad = dir / "bad.xqckpt";
  write_bytes(bad, with_header_text(f, text));
  check_rejected(bad, "header is nested deeper than 64 levels");
}
