// int8 model files: save -> load gives the same graph field by field and the same int8
// outputs; truncated, corrupted and inconsistent files throw io_error naming the file and
// the problem; failed writes leave nothing behind.

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../runtime/int8_graph_test_util.hpp"
#include "checkpoint_test_util.hpp"
#include "xquant/io/int8_model_file.hpp"
#include "xquant/nn/layers.hpp"
#include "xquant/nn/layers/conv_bn.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/runtime/graph.hpp"
#include "xquant/runtime/int8_model.hpp"

using namespace xquant;
using namespace xquant::runtime;
using nlohmann::json;
using bytes = std::vector<unsigned char>;

namespace {

void check_same_grid(const activation_grid& a, const activation_grid& b) {
  CHECK(std::bit_cast<std::uint32_t>(a.scale) == std::bit_cast<std::uint32_t>(b.scale));
  CHECK(a.zero_point == b.zero_point);
  CHECK(a.qmin == b.qmin);
  CHECK(a.qmax == b.qmax);
}

void check_same_weights(const lowered_weighted& a, const lowered_weighted& b) {
  CHECK(a.out == b.out);
  CHECK(a.depth == b.depth);
  CHECK(a.weight == b.weight);
  CHECK(a.bias == b.bias);
  REQUIRE(a.requant.scale.size() == b.requant.scale.size());
  for (std::size_t i = 0; i < a.requant.scale.size(); ++i) {
    CHECK(std::bit_cast<std::uint32_t>(a.requant.scale[i]) == std::bit_cast<std::uint32_t>(b.requant.scale[i]));
  }
  CHECK(a.requant.fixed.multiplier == b.requant.fixed.multiplier);
  CHECK(a.requant.fixed.shift == b.requant.fixed.shift);
  CHECK(a.requant.zero_point == b.requant.zero_point);
  CHECK(a.requant.qmin == b.requant.qmin);
  CHECK(a.requant.qmax == b.requant.qmax);
}

void check_same_step(const step& sa, const step& sb) {
  REQUIRE(sa.index() == sb.index());
  std::visit(
      [&](const auto& a) {
        using T = std::decay_t<decltype(a)>;
        const T& b = std::get<T>(sb);
        if constexpr (requires { a.in; }) CHECK(a.in == b.in);
        CHECK(a.out == b.out);
        if constexpr (std::is_same_v<T, conv_step>) {
          CHECK(a.kernel == b.kernel);
          CHECK(a.padding == b.padding);
        }
        if constexpr (requires { a.stride; }) CHECK(a.stride == b.stride);
        if constexpr (requires { a.w; }) check_same_weights(a.w, b.w);
        if constexpr (std::is_same_v<T, concat_step>) CHECK(a.inputs == b.inputs);
        if constexpr (std::is_same_v<T, add_step>) {
          CHECK(a.a == b.a);
          CHECK(a.b == b.b);
          CHECK(a.act == b.act);
        }
      },
      sa);
}

/// Every field of two graphs, floats bit for bit.
void check_same_graph(const graph& a, const graph& b) {
  CHECK(a.input_c == b.input_c);
  CHECK(a.input_h == b.input_h);
  CHECK(a.input_w == b.input_w);
  CHECK(a.output == b.output);
  REQUIRE(a.values.size() == b.values.size());
  for (std::size_t v = 0; v < a.values.size(); ++v) {
    CAPTURE(v);
    CHECK(a.values[v].h == b.values[v].h);
    CHECK(a.values[v].w == b.values[v].w);
    CHECK(a.values[v].c == b.values[v].c);
    CHECK(a.values[v].flat == b.values[v].flat);
    CHECK(a.values[v].flat_c == b.values[v].flat_c);
    CHECK(a.values[v].storage_of == b.values[v].storage_of);
    check_same_grid(a.values[v].grid, b.values[v].grid);
  }
  REQUIRE(a.steps.size() == b.steps.size());
  CHECK(a.step_names == b.step_names);
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    CAPTURE(i);
    check_same_step(a.steps[i], b.steps[i]);
  }
}

/// The int8 model's logits for `images` random images (the same for the same graph).
std::vector<float> run(graph g, std::size_t images, std::uint32_t seed = 7) {
  int8_model model(std::move(g), 3);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.5f, 2.5f);
  std::vector<float> x(images * model.input_size()), logits(images * model.output_size());
  for (float& v : x) v = dist(rng);
  model.run(x, images, logits);
  return logits;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Loading `file` throws io_error whose message contains every fragment and the name.
void check_rejected(const bytes& file, std::initializer_list<std::string> fragments) {
  std::string message;
  try {
    (void)io::load_int8_model(file, "bad.xqint8");
    message = "(loaded without error)";
  } catch (const io_error& e) {
    message = e.what();
  } catch (const std::exception& e) {
    message = std::string("(not an io_error) ") + e.what();
  }
  INFO("message: ", message);
  CHECK(message.find("int8 model 'bad.xqint8': ") != std::string::npos);
  for (const std::string& f : fragments) CHECK_MESSAGE(message.find(f) != std::string::npos, "expected: ", f);
}

std::uint64_t header_size(const bytes& file) { return io::le::get_u64(file.data() + 8); }

/// A file of the given header text (a multiple of 64 bytes minus 24) and data section,
/// with a valid preamble.
bytes make_file(const std::string& text, const bytes& data) {
  bytes out(24 + text.size() + data.size(), 0);  // sized once: GCC 12 misreads inserts (-Warray-bounds)
  std::memcpy(out.data(), "XQINT8\0\1", 8);
  io::le::put_u64(out.data() + 8, text.size());
  io::le::put_u32(out.data() + 16, io::crc32(text.data(), text.size()));
  std::memcpy(out.data() + 24, text.data(), text.size());
  if (!data.empty()) std::memcpy(out.data() + 24 + text.size(), data.data(), data.size());
  return out;
}

/// The file with its JSON header (and data section) edited, the header CRC recomputed and
/// the padding redone: what a writer with a bug or an attacker would produce.
bytes edit_file(const bytes& file, const std::function<void(json&, bytes&)>& edit) {
  const std::size_t h = static_cast<std::size_t>(header_size(file));
  json header = json::parse(file.begin() + 24, file.begin() + 24 + static_cast<std::ptrdiff_t>(h));
  bytes data(file.begin() + 24 + static_cast<std::ptrdiff_t>(h), file.end());
  edit(header, data);
  std::string text = header.dump();
  text.append((24 + text.size() + 63) / 64 * 64 - 24 - text.size(), ' ');
  return make_file(text, data);
}

/// Overwrites the first `size` bytes of a blob in `data` and updates its CRC in the header.
void put_blob(json& blob, bytes& data, const void* values, std::size_t size) {
  const auto offset = blob["offset"].get<std::size_t>();
  std::memcpy(data.data() + offset, values, size);
  blob["crc32"] = io::crc32(data.data() + offset, blob["size"].get<std::size_t>());
}

/// A small QAT model with every kind of traced layer the int8 engine runs: stub, conv_bn
/// (ReLU), max pool, an inverted residual (1x1 ReLU6, 3x3 depthwise, 1x1 linear, add),
/// flatten, dense.
class residual_model : public nn::module {
 public:
  residual_model()
      : stem_({.in = 2, .out = 8, .kernel = 3, .act = nn::activation::relu}),
        expand_({.in = 8, .out = 16, .kernel = 1, .act = nn::activation::relu6}),
        depthwise_({.in = 16, .out = 16, .kernel = 3, .groups = 16, .act = nn::activation::relu6}),
        project_({.in = 16, .out = 8, .kernel = 1}),
        fc_({.in = 8 * 4 * 4, .out = 5}) {
    register_module("quant", stub_);
    register_module("stem", stem_);
    register_module("pool", pool_);
    register_module("expand", expand_);
    register_module("depthwise", depthwise_);
    register_module("project", project_);
    register_module("add", add_);
    register_module("flatten", flatten_);
    register_module("fc", fc_);
  }
  nn::variable forward(const nn::variable& x) override {
    const nn::variable y = pool_(stem_(stub_(x)));
    return fc_(flatten_(add_(y, project_(depthwise_(expand_(y))))));
  }

 private:
  nn::quant_stub<w8a8> stub_;
  nn::conv_bn<w8a8> stem_;
  nn::max_pool2d pool_{2};
  nn::conv_bn<w8a8> expand_, depthwise_, project_;
  nn::quantized_add<w8a8> add_;
  nn::flatten flatten_;
  nn::linear<w8a8> fc_;
};

/// The residual model with initialised weights and calibrated activation ranges, converted.
graph converted_residual_model() {
  residual_model m;
  std::mt19937 rng(11);
  m.reset_parameters(rng);
  m.train();
  for (int i = 0; i < 3; ++i) {
    autograd::no_grad_guard no_grad;
    array<float> x(shape_t{4, 2, 8, 8});
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    for (float& v : x) v = dist(rng);
    (void)m(nn::variable(x));
  }
  return build_graph(m, array<float>(shape_t{1, 2, 8, 8}, 0.0f));
}

}  // namespace

TEST_CASE("int8 model file: the hand-built graph round-trips field by field and runs identically") {
  const graph g = int8_graph_test::small_graph();
  temp_dir dir;
  const json metadata = {{"model", "small"}, {"accuracy", 0.875}};
  io::save_int8_model(dir / "small.xqint8", g, metadata);
  json loaded_metadata;
  const graph loaded = io::load_int8_model(dir / "small.xqint8", loaded_metadata);
  check_same_graph(g, loaded);
  CHECK(loaded_metadata == metadata);
  CHECK(dir.entries() == 1);  // no temporary left
  CHECK(same_bits(run(g, 5), run(loaded, 5)));

  // The bytes are the file, and a second save writes the same bytes.
  const bytes file = io::read_file(dir / "small.xqint8");
  CHECK(io::encode_int8_model(g, metadata) == file);
  check_same_graph(g, io::load_int8_model(file));
  CHECK(header_size(file) % 64 == 40);  // 24 + H is a multiple of 64
  CHECK(std::memcmp(file.data(), "XQINT8\0\1", 8) == 0);
  // Grid scales print as the shortest decimal that reads back as the same float32.
  const std::string header(file.begin() + 24, file.begin() + 24 + static_cast<std::ptrdiff_t>(header_size(file)));
  CHECK(header.find("\"scale\":0.02,") != std::string::npos);
  CHECK(io::detail::short_decimal(0.1f) == 0.1);
  std::mt19937 rng(5);
  int changed = 0;
  for (int i = 0; i < 100000; ++i) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()) & 0x7FFFFFFFu);
    changed += std::isfinite(f) && static_cast<float>(io::detail::short_decimal(f)) != f;
  }
  CHECK(changed == 0);
}

TEST_CASE("int8 model file: a converted QAT model round-trips and gives the same int8 logits") {
  const graph g = converted_residual_model();
  REQUIRE(g.steps.size() == 8);  // quantize, stem, pool, expand, depthwise, project, add, fc
  CHECK(std::holds_alternative<depthwise_step>(g.steps[4]));
  CHECK(g.values[g.output].flat);
  temp_dir dir;
  io::save_int8_model(dir / "model.xqint8", g);
  const graph loaded = io::load_int8_model(dir / "model.xqint8");
  check_same_graph(g, loaded);
  const std::vector<float> expected = run(g, 7, 3);
  CHECK(same_bits(expected, run(loaded, 7, 3)));
  bool any_nonzero = false;
  for (float v : expected) any_nonzero = any_nonzero || v != 0.0f;
  CHECK(any_nonzero);  // not a trivially equal all-zero output
  // Size: one byte per weight plus 8 per output channel, the header and < 64 bytes of
  // padding per array.
  std::size_t weights = 0, channels = 0, arrays = 0;
  for (const step& s : g.steps) {
    std::visit(
        [&](const auto& st) {
          if constexpr (requires { st.w; }) {
            weights += st.w.weight.size();
            channels += st.w.out;
            arrays += 3;
          }
        },
        s);
  }
  const std::size_t file_size = io::read_file(dir / "model.xqint8").size();
  CHECK(file_size <= 24 + header_size(io::read_file(dir / "model.xqint8")) + weights + 8 * channels + 63 * arrays);
}

TEST_CASE("int8 model file: every truncation is rejected with the part that is missing") {
  const bytes file = io::encode_int8_model(int8_graph_test::small_graph());
  const std::size_t data_start = 24 + static_cast<std::size_t>(header_size(file));
  REQUIRE(file.size() > data_start);
  for (std::size_t length = 0; length < file.size(); ++length) {
    CAPTURE(length);
    const bytes cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(length));
    if (length < 24) {
      check_rejected(cut, {"file is truncated: ", "shorter than the 24-byte preamble"});
    } else if (length < data_start) {
      check_rejected(cut, {"the header of ", "does not fit in the"});
    } else {
      check_rejected(cut, {"file is truncated: the data section should be"});
    }
  }
  bytes longer = file;
  longer.push_back(0);
  check_rejected(longer, {"1 unexpected bytes after the data section"});
}

TEST_CASE("int8 model file: a changed byte anywhere is detected") {
  const bytes file = io::encode_int8_model(int8_graph_test::small_graph());
  for (std::size_t i = 0; i < file.size(); ++i) {
    CAPTURE(i);
    for (const unsigned char flip : {0x01, 0x80}) {
      bytes bad = file;
      bad[i] ^= flip;
      check_rejected(bad, {});
    }
  }
  bytes bad = file;
  bad[20] = 1;
  check_rejected(bad, {"reserved preamble bytes are not zero"});
  bad = file;
  bad[3] = 'X';
  check_rejected(bad, {"not an xquant int8 model (wrong magic bytes)"});
  bad = file;
  bad[30] ^= 1;
  check_rejected(bad, {"header checksum mismatch"});
  bad = file;
  bad.back() ^= 1;  // the last blob's data
  check_rejected(bad, {"step 9 (dense 'fc_gap'): \"weights\".\"scale\": data checksum mismatch"});
  bad = file;
  bad[24 + header_size(file) + 100] = 7;  // the gap after the first array (72 weight bytes at 0)
  check_rejected(bad, {"nonzero padding before step 1 (conv 'conv1'): \"weights\".\"bias\""});
}

TEST_CASE("int8 model file: format, version and JSON structure") {
  const bytes file = io::encode_int8_model(int8_graph_test::small_graph());
  const auto rejected = [&](const std::function<void(json&, bytes&)>& edit,
                            std::initializer_list<std::string> fragments) {
    check_rejected(edit_file(file, edit), fragments);
  };
  rejected([](json& h, bytes&) { h["format"] = "xquant.checkpoint"; },
           {"header format is \"xquant.checkpoint\", expected \"xquant.int8_model\""});
  rejected([](json& h, bytes&) { h.erase("format"); }, {"header format is missing"});
  rejected([](json& h, bytes&) { h["version"] = 2; }, {"unsupported version 2 (this build reads version 1)"});
  rejected([](json& h, bytes&) { h["version"] = "1"; }, {"unsupported version \"1\""});
  rejected([](json& h, bytes&) { h = json::array(); }, {"header must be a JSON object, got array"});
  rejected([](json& h, bytes&) { h["data_size"] = h["data_size"].get<std::uint64_t>() + 64; },
           {"file is truncated: the data section should be"});
  rejected([](json& h, bytes&) { h["data_size"] = -1; }, {"header: \"data_size\" must be a non-negative integer"});
  rejected([](json& h, bytes&) { h["metadata"] = 3; }, {"\"metadata\" must be a JSON object"});
  rejected([](json& h, bytes&) { h.erase("values"); }, {"header has no \"values\""});
  rejected([](json& h, bytes&) { h["steps"] = json::object(); }, {"header: \"steps\" must be an array, got object"});
  rejected([](json& h, bytes&) { h["input"]["h"] = 5; },
           {"step 0 (quantize 'quant'): output is [6, 6, 2], expected [5, 6, 2]"});
  rejected([](json& h, bytes&) { h["output"] = 40; }, {"output value 40 does not exist"});
  rejected(
      [](json& h, bytes&) {
        json deep = json::object();
        for (int i = 0; i < 80; ++i) deep = json{{"x", deep}};
        h["metadata"] = deep;
      },
      {"header is nested deeper than 64 levels"});
  // Not JSON at all, with a valid CRC.
  check_rejected(make_file("{\"format\": " + std::string(64 - 24 - 11, ' '), {}), {"header is not valid JSON: "});
}

TEST_CASE("int8 model file: values and steps with wrong types, kinds, indices or numbers") {
  const bytes file = io::encode_int8_model(int8_graph_test::small_graph());
  const auto rejected = [&](const std::function<void(json&, bytes&)>& edit,
                            std::initializer_list<std::string> fragments) {
    check_rejected(edit_file(file, edit), fragments);
  };
  rejected([](json& h, bytes&) { h["values"][3]["h"] = -1; },
           {"value 3: \"h\" must be a non-negative integer, got -1"});
  rejected([](json& h, bytes&) { h["values"][3]["h"] = 2.5; },
           {"value 3: \"h\" must be a non-negative integer, got 2.5"});
  rejected([](json& h, bytes&) { h["values"][3].erase("c"); }, {"value 3 has no \"c\""});
  rejected([](json& h, bytes&) { h["values"][3]["flat"] = 1; }, {"value 3: \"flat\" must be true or false, got 1"});
  rejected([](json& h, bytes&) { h["values"][3]["scale"] = -0.5; }, {"value 3: grid scale -0.5"});
  rejected([](json& h, bytes&) { h["values"][3]["scale"] = 0; }, {"value 3: grid scale 0"});
  rejected([](json& h, bytes&) { h["values"][3]["scale"] = 1e300; },
           {"value 3: \"scale\" 1e+300 is not a finite float32"});
  rejected([](json& h, bytes&) { h["values"][3]["scale"] = "0.1"; }, {"value 3: \"scale\" must be a number"});
  rejected([](json& h, bytes&) { h["values"][2]["zero_point"] = 10000000000LL; },
           {"value 2: \"zero_point\" must be a 32-bit integer, got 10000000000"});
  rejected([](json& h, bytes&) { h["values"][2]["zero_point"] = -3; }, {"value 2: zero point -3 is outside"});
  rejected([](json& h, bytes&) { h["values"][2]["qmax"] = 256; }, {"value 2: grid [0, 256]"});
  rejected([](json& h, bytes&) { h["values"][8]["view_of"] = 10; }, {"value 8 is a view of value 10"});
  rejected([](json& h, bytes&) { h["values"][8]["view_of"] = 18446744073709551615ULL; }, {"value 8 is a view of"});
  rejected([](json& h, bytes&) { h["values"][8].erase("view_of"); },
           {"step 8 (dense 'fc_flat'): input value 8 is read"});
  rejected([](json& h, bytes&) { h["steps"][1]["in"] = 99; }, {"step 1 (conv 'conv1'): input value 99 does not exist"});
  rejected([](json& h, bytes&) { h["steps"][1]["kind"] = "pool"; },
           {"step 1 (pool 'conv1'): unknown step kind 'pool'"});
  rejected([](json& h, bytes&) { h["steps"][1]["kind"] = 3; }, {"step 1: \"kind\" must be a string, got 3"});
  rejected([](json& h, bytes&) { h["steps"][2]["kind"] = "conv"; }, {"step 2 (conv 'block.dw') has no \"kernel\""});
  rejected([](json& h, bytes&) { h["steps"][2].erase("name"); }, {"step 2 has no \"name\""});
  rejected([](json& h, bytes&) { h["steps"][4]["activation"] = "gelu"; },
           {"step 4 (add 'block.add'): unknown activation 'gelu'"});
  rejected([](json& h, bytes&) { h["steps"][5]["kind"] = "global_avg_pool"; },
           {"step 5 (global_avg_pool 'pool'): output is [3, 3, 4], expected [1, 1, 4] flat"});
  rejected([](json& h, bytes&) { std::swap(h["steps"][2], h["steps"][3]); },
           {"step 2 (conv 'block.project'): input value 2 is read before a step writes it"});
  rejected([](json& h, bytes&) { h["steps"][5]["out"] = 1; }, {"output value 1 is written twice"});
  rejected([](json& h, bytes&) { h["steps"][11]["inputs"] = 11; },
           {"step 11 (concat 'head.concat'): \"inputs\" must be an array, got 11"});
  rejected([](json& h, bytes&) { h["steps"][11]["inputs"][1] = -10; },
           {"step 11 (concat 'head.concat'): \"inputs\"[1] must be a value index, got -10"});
  rejected([](json& h, bytes&) { h["steps"][11]["inputs"][1] = "v10"; }, {"\"inputs\"[1] must be a value index"});
  rejected([](json& h, bytes&) { h["steps"][11]["inputs"] = json::array(); }, {"step 11 (concat 'head.concat'): no inputs"});
  rejected([](json& h, bytes&) { h["steps"][11]["inputs"][2] = 6; }, {"(all but the channels must agree)"});
  rejected([](json& h, bytes&) { h["steps"][11].erase("inputs"); }, {"step 11 (concat 'head.concat') has no \"inputs\""});
}

TEST_CASE("int8 model file: weight arrays with wrong sizes, offsets, checksums or scales") {
  const bytes file = io::encode_int8_model(int8_graph_test::small_graph());
  const auto rejected = [&](const std::function<void(json&, bytes&)>& edit,
                            std::initializer_list<std::string> fragments) {
    check_rejected(edit_file(file, edit), fragments);
  };
  const std::string conv1 = "step 1 (conv 'conv1'): \"weights\"";
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["out"] = 5; },
           {conv1 + ".\"weight\": size 72 bytes, expected 90 (out * depth)"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["out"] = 4611686018427387904ULL; },
           {conv1 + ": out 4611686018427387904 * depth 18 overflows"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["bias"]["size"] = 12; },
           {conv1 + ".\"bias\": size 12 bytes, expected 16 (4 * out)"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"].erase("scale"); }, {conv1 + " has no \"scale\""});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["weight"]["offset"] = 1; },
           {conv1 + ".\"weight\": offset 1 is not a multiple of 64"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["weight"]["offset"] = 18446744073709551552ULL; },
           {conv1 + ".\"weight\": bytes [18446744073709551552, 18446744073709551552 + 72) lie outside"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["weight"]["crc32"] = 4294967296ULL; },
           {"\"crc32\" 4294967296 is not a 32-bit value"});
  rejected([](json& h, bytes&) { h["steps"][3]["weights"]["bias"] = h["steps"][1]["weights"]["bias"]; },
           {"overlaps the array before it"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["weight"]["crc32"] = 0; },
           {conv1 + ".\"weight\": data checksum mismatch"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["zero_point"] = 9; },
           {"step 1 (conv 'conv1'): requantization zero point 9 is not the output grid's 10"});
  rejected([](json& h, bytes&) { h["steps"][1]["weights"]["qmax"] = 300; },
           {"clamp [10, 300] is not an ordered range"});
  rejected(
      [](json& h, bytes& data) {
        const float nan = std::nanf("");
        put_blob(h["steps"][9]["weights"]["scale"], data, &nan, 4);
      },
      {"step 9 (dense 'fc_gap'): requantization scale[0] = nan is not a finite number in (0, 2^30)"});
  rejected(
      [](json& h, bytes& data) {
        const float scales[2] = {1e-3f, -1e-3f};
        put_blob(h["steps"][9]["weights"]["scale"], data, scales, 8);
      },
      {"requantization scale[1] = -0.001"});
  rejected(
      [](json& h, bytes& data) {
        const std::int32_t bias = std::numeric_limits<std::int32_t>::max();
        put_blob(h["steps"][9]["weights"]["bias"], data, &bias, 4);
      },
      {"step 9 (dense 'fc_gap'): output channel 0 can overflow the int32 accumulator"});
  rejected(
      [](json& h, bytes& data) {
        const std::int32_t bias = (1 << 30) + 5;
        put_blob(h["steps"][2]["weights"]["bias"], data, &bias, 4);
      },
      {"step 2 (depthwise 'block.dw'): bias[0] = 1073741829 is outside [-2^30, 2^30]"});
}

TEST_CASE("int8 model file: failed or refused writes leave no file behind") {
  const graph g = int8_graph_test::small_graph();
  temp_dir dir;
  CHECK_THROWS_AS(io::save_int8_model(dir / "missing" / "m.xqint8", g), io_error);
  std::filesystem::create_directory(dir / "taken");
  CHECK_THROWS_AS(io::save_int8_model(dir / "taken", g), io_error);
  CHECK(std::filesystem::is_directory(dir / "taken"));
  CHECK(dir.entries() == 1);  // only "taken": no temporary left next to it
  CHECK(std::filesystem::is_empty(dir / "taken"));

  graph bad = g;
  bad.values[3].grid.scale = -1.0f;
  CHECK_THROWS_AS(io::save_int8_model(dir / "bad.xqint8", bad), value_error);
  CHECK_THROWS_AS((io::save_int8_model(dir / "meta.xqint8", g, json::array())), value_error);
  CHECK_THROWS_AS((io::save_int8_model(dir / "utf8.xqint8", g, {{"note", std::string("\xff\xfe")}})), value_error);
  CHECK(dir.entries() == 1);

  // Replacing a file: the new content, in one piece.
  io::save_int8_model(dir / "m.xqint8", g, {{"v", 1}});
  io::save_int8_model(dir / "m.xqint8", g, {{"v", 2}});
  json metadata;
  check_same_graph(g, io::load_int8_model(dir / "m.xqint8", metadata));
  CHECK(metadata["v"] == 2);
  CHECK(dir.entries() == 2);

  std::string message;
  try {
    (void)io::load_int8_model(dir / "none.xqint8");
  } catch (const io_error& e) {
    message = e.what();
  }
  CHECK(message.find("none.xqint8") != std::string::npos);
}
