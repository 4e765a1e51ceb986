#pragma once
// int8 model files: a converted integer-only graph (runtime/graph_types.hpp) in one binary
// file, written atomically and validated completely when read. One byte per weight, two
// 32-bit numbers per output channel and a JSON header of a few KB: 0.25 to 0.32 of the size
// of the same network's FP32 parameters and buffers (cnn, resnet, mobilenet; the smaller
// the network, the more the header counts). Reading and running a file needs neither nn/
// nor xtensor: this header includes only the runtime's types (and nlohmann_json).
//
// ---- Format "xquant.int8_model", version 1 ------------------------------------------
//
// The container is that of checkpoints (io/checkpoint.hpp); every integer and float in the
// file is little-endian.
//
//   offset   size  content
//   0        8     magic: 'X' 'Q' 'I' 'N' 'T' '8' 0x00 0x01
//   8        8     H, the byte length of the JSON header (uint64)
//   16       4     CRC-32 (zlib's, io/crc32.hpp) of the H header bytes (uint32)
//   20       4     reserved, zero
//   24       H     the JSON header, UTF-8, padded with spaces so that 24 + H is a
//                  multiple of 64
//   24 + H   D     the data section: the blobs below, each at its "offset" relative to the
//                  start of the section, a multiple of 64 (so every array is 64-byte
//                  aligned in the file); the gaps are zero bytes; the file ends exactly at
//                  24 + H + D
//
// The JSON header:
//
//   {
//     "format": "xquant.int8_model",
//     "version": 1,
//     "data_size": D,
//     "input": {"c": 1, "h": 28, "w": 28},       NCHW extents of one input image
//     "output": 17,                              the value dequantized into logits
//     "values": [ value... ],                    runtime::graph::values, in order
//     "steps": [ step... ],                      runtime::graph::steps, in order
//     "metadata": { ... }                        the caller's object, returned by load
//   }
//
//   value: {"h": 14, "w": 14, "c": 32, "flat": false, "flat_c": 0,
//           "scale": 0.0235, "zero_point": 0, "qmin": 0, "qmax": 255,     stored uint8 grid
//           "view_of": 5}                        only for a flattened view (storage_of)
//   scale is the float32 grid scale as a JSON number: the shortest decimal that reads
//   back as the same float32.
//
//   step: {"kind": K, "name": "layer1.0.conv1", ...} where K and the other keys are
//     "quantize":         "out"
//     "conv":             "in", "out", "kernel", "stride", "padding", "weights"
//     "depthwise":        "in", "out", "stride", "weights"            (3x3, padding 1)
//     "dense":            "in", "out", "weights"
//     "add":              "a", "b", "out", "activation": "none" | "relu" | "relu6"
//     "max_pool":         "in", "out"                                 (2x2, stride 2)
//     "global_avg_pool":  "in", "out"
//     "concat":           "inputs": [value...], "out"                 (along the channels)
//
//   weights (runtime::lowered_weighted):
//     {"out": O, "depth": K, "zero_point": z, "qmin": lo, "qmax": hi,  requantization output
//      "weight": blob,        int8  [O][K], taps in NHWC (kh, kw, c) order
//      "bias":   blob,        int32 [O], the input zero point folded in
//      "scale":  blob}        float32 [O], the per-channel requantization scales
//   blob: {"offset": 0, "size": 4608, "crc32": 2840395119}; size is in bytes and must be
//   O * K, 4 * O and 4 * O respectively; crc32 covers those bytes.
//
// The Q31 multipliers and shifts are not stored: they are a function of the float32 scale
// (kernels::quantize_multipliers, exact), recomputed when the file is read.
//
// ---- Loading ----------------------------------------------------------------------
//
// load_int8_model checks, in this order: the preamble (length, magic, reserved word), that
// the header fits in the file, the header CRC, that the header is JSON (nested at most 64
// levels) holding an object, format and version, that the data section ends exactly at the
// end of the file, then the whole header: the type and range of every field (indices and
// extents non-negative integers, grid numbers 32-bit integers, scales float32, known step
// kinds and activations), every blob's size (from out and depth, overflow-free), alignment
// and bounds, that no two blobs overlap and the bytes between them are zero, then every
// blob's CRC. Only then are arrays allocated (their sizes are bounded by the file's), the
// multipliers computed and the graph built, and runtime::validate (runtime/validate.hpp)
// proves it safe to execute: indices, step order, extents, accumulator bounds, grids. The
// first problem is thrown as io_error naming the file, e.g.
//   "int8 model 'cnn.xqint8': step 3 (conv 'layer1'): \"weights\".\"bias\": size 60 bytes,
//    expected 64 (4 * out)".
// Every offset is bounds-checked with overflow-free arithmetic, and nlohmann_json's own
// exceptions become io_error, so a truncated, corrupt or hostile file throws; it never
// crashes, reads out of bounds or allocates more than a small multiple of its size (see
// tests/fuzz/fuzz_int8_model_file.cpp). Readers ignore keys they do not know.
//
// Byte order: the format is little-endian; a big-endian host converts the int32 and
// float32 arrays on the way in and out (the int8 weights need nothing).
//
// Saving validates the graph first (runtime::validate; shape_error / value_error), so an
// invalid graph is never written, and writes through io/file.hpp's atomic_file: the target
// holds the old content or the complete new one, never a partial file.

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/io/crc32.hpp"
#include "xquant/io/file.hpp"
#include "xquant/io/binary_format.hpp"
#include "xquant/kernels/fixed_point.hpp"
#include "xquant/runtime/graph_types.hpp"
#include "xquant/runtime/validate.hpp"

namespace xquant::io {

inline constexpr char int8_model_magic[8] = {'X', 'Q', 'I', 'N', 'T', '8', '\0', '\1'};
inline constexpr std::string_view int8_model_format = "xquant.int8_model";
inline constexpr int int8_model_version = 1;

namespace detail {

inline constexpr std::size_t int8_preamble_size = 24;
inline constexpr std::size_t int8_alignment = 64;
inline constexpr int int8_max_json_depth = 64;

inline const char* const int8_activation_names[] = {"none", "relu", "relu6"};

/// Calls sink(bytes, size) over the little-endian bytes of n 4-byte numbers (int32 or
/// float): one call on a little-endian host, chunks through a small buffer otherwise.
template <class T, class Sink>
void for_le_words(const T* p, std::size_t n, Sink&& sink) {
  static_assert(sizeof(T) == 4 && std::is_trivially_copyable_v<T>);
  if constexpr (std::endian::native == std::endian::little) {
    if (n > 0) sink(reinterpret_cast<const unsigned char*>(p), n * 4);
  } else {
    unsigned char chunk[4096];
    for (std::size_t i = 0; i < n; i += sizeof chunk / 4) {
      const std::size_t k = std::min(sizeof chunk / 4, n - i);
      for (std::size_t j = 0; j < k; ++j) le::put_u32(chunk + 4 * j, std::bit_cast<std::uint32_t>(p[i + j]));
      sink(chunk, k * 4);
    }
  }
}

/// n little-endian 4-byte numbers into host Ts.
template <class T>
void from_le_words(const unsigned char* src, std::size_t n, T* dst) {
  static_assert(sizeof(T) == 4 && std::is_trivially_copyable_v<T>);
  for (std::size_t i = 0; i < n; ++i) dst[i] = std::bit_cast<T>(le::get_u32(src + 4 * i));
}

inline std::uint64_t int8_align_up(std::uint64_t v) {
  return (v + int8_alignment - 1) / int8_alignment * int8_alignment;
}

// ---- writing ------------------------------------------------------------------------

/// A float32 for the JSON header: the shortest decimal that reads back as the same float32
/// (0.02, not 0.019999999552965164, which is what the float's exact double prints as),
/// unless the double nearest that decimal does not round back to it (a double rounding
/// that has not been seen to happen); then the exact double.
inline double short_decimal(float f) {
  char text[32];
  const auto printed = std::to_chars(text, text + sizeof text, f);
  double d = 0;
  if (printed.ec == std::errc() && std::from_chars(text, printed.ptr, d).ec == std::errc() &&
      static_cast<float>(d) == f) {
    return d;
  }
  return f;
}

/// One array of the data section, as written.
struct blob_source {
  const void* data;
  std::size_t count;  ///< elements
  int element_size;   ///< 1: int8, 4: int32 / float32
  bool is_float = false;
  std::uint64_t offset = 0;
  std::uint32_t crc = 0;

  std::uint64_t size() const { return std::uint64_t{count} * static_cast<std::uint64_t>(element_size); }

  template <class Sink>
  void emit(Sink&& sink) const {
    if (element_size == 1) {
      if (count > 0) sink(static_cast<const unsigned char*>(data), count);
    } else if (is_float) {
      for_le_words(static_cast<const float*>(data), count, sink);
    } else {
      for_le_words(static_cast<const std::int32_t*>(data), count, sink);
    }
  }
};

class int8_writer {
 public:
  explicit int8_writer(const runtime::graph& g) : g_(g) {}

  /// The JSON header text, padded; lays the blobs out and checksums them. Call once.
  std::string header(const nlohmann::json& metadata) {
    using ordered_json = nlohmann::ordered_json;
    ordered_json values = ordered_json::array();
    for (const runtime::value_info& v : g_.values) values.push_back(value_json(v));
    ordered_json steps = ordered_json::array();
    for (std::size_t i = 0; i < g_.steps.size(); ++i) {
      ordered_json s = {{"kind", runtime::detail::step_kind(g_.steps[i])}, {"name", g_.step_names[i]}};
      std::visit([&](const auto& st) { add_fields(st, s); }, g_.steps[i]);
      steps.push_back(std::move(s));
    }
    ordered_json header = ordered_json::object();  // keys in the documented order
    header["format"] = int8_model_format;
    header["version"] = int8_model_version;
    header["data_size"] = data_size_;  // known now: the steps laid the blobs out
    header["input"] = {{"c", g_.input_c}, {"h", g_.input_h}, {"w", g_.input_w}};
    header["output"] = g_.output;
    header["values"] = std::move(values);
    header["steps"] = std::move(steps);
    header["metadata"] = ordered_json(metadata);
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& e) {
      xquant::detail::throw_error<value_error>("int8 model header cannot be written (is the metadata or a layer name "
                                               "not valid UTF-8?): ",
                                               e.what());
    }
    text.append(int8_align_up(int8_preamble_size + text.size()) - int8_preamble_size - text.size(), ' ');
    return text;
  }

  /// Writes the whole file through sink(bytes, size); `text` from header().
  template <class Sink>
  void write(const std::string& text, Sink&& sink) const {
    unsigned char preamble[int8_preamble_size] = {};
    std::memcpy(preamble, int8_model_magic, sizeof int8_model_magic);
    le::put_u64(preamble + 8, text.size());
    le::put_u32(preamble + 16, crc32(text.data(), text.size()));
    sink(preamble, sizeof preamble);
    sink(reinterpret_cast<const unsigned char*>(text.data()), text.size());
    static constexpr unsigned char zeros[int8_alignment] = {};
    std::uint64_t written = 0;
    for (const blob_source& b : blobs_) {
      sink(zeros, static_cast<std::size_t>(b.offset - written));  // < 64 bytes of padding
      b.emit(sink);
      written = b.offset + b.size();
    }
  }

 private:
  static nlohmann::ordered_json value_json(const runtime::value_info& v) {
    nlohmann::ordered_json j = {{"h", v.h},
                                {"w", v.w},
                                {"c", v.c},
                                {"flat", v.flat},
                                {"flat_c", v.flat_c},
                                {"scale", short_decimal(v.grid.scale)},
                                {"zero_point", v.grid.zero_point},
                                {"qmin", v.grid.qmin},
                                {"qmax", v.grid.qmax}};
    if (v.storage_of != runtime::value_info::npos) j["view_of"] = v.storage_of;
    return j;
  }

  nlohmann::ordered_json blob(const void* data, std::size_t count, int element_size, bool is_float) {
    blob_source b{data, count, element_size, is_float};
    b.offset = int8_align_up(data_size_);
    b.emit([&](const unsigned char* p, std::size_t n) { b.crc = crc32(p, n, b.crc); });
    data_size_ = b.offset + b.size();
    blobs_.push_back(b);
    return {{"offset", b.offset}, {"size", b.size()}, {"crc32", b.crc}};
  }

  nlohmann::ordered_json weights_json(const runtime::lowered_weighted& w) {
    const kernels::requant_channel_params& rq = w.requant;
    nlohmann::ordered_json j = {
        {"out", w.out}, {"depth", w.depth}, {"zero_point", rq.zero_point}, {"qmin", rq.qmin}, {"qmax", rq.qmax}};
    j["weight"] = blob(w.weight.data(), w.weight.size(), 1, false);
    j["bias"] = blob(w.bias.data(), w.bias.size(), 4, false);
    j["scale"] = blob(rq.scale.data(), rq.scale.size(), 4, true);
    return j;
  }

  void add_fields(const runtime::quantize_step& st, nlohmann::ordered_json& j) { j["out"] = st.out; }
  void add_fields(const runtime::conv_step& st, nlohmann::ordered_json& j) {
    j["in"] = st.in;
    j["out"] = st.out;
    j["kernel"] = st.kernel;
    j["stride"] = st.stride;
    j["padding"] = st.padding;
    j["weights"] = weights_json(st.w);
  }
  void add_fields(const runtime::depthwise_step& st, nlohmann::ordered_json& j) {
    j["in"] = st.in;
    j["out"] = st.out;
    j["stride"] = st.stride;
    j["weights"] = weights_json(st.w);
  }
  void add_fields(const runtime::dense_step& st, nlohmann::ordered_json& j) {
    j["in"] = st.in;
    j["out"] = st.out;
    j["weights"] = weights_json(st.w);
  }
  void add_fields(const runtime::add_step& st, nlohmann::ordered_json& j) {
    j["a"] = st.a;
    j["b"] = st.b;
    j["out"] = st.out;
    j["activation"] = int8_activation_names[static_cast<int>(st.act)];  // validated: 0..2
  }
  void add_fields(const runtime::concat_step& st, nlohmann::ordered_json& j) {
    j["inputs"] = st.inputs;
    j["out"] = st.out;
  }
  template <class Pool>
  void add_fields(const Pool& st, nlohmann::ordered_json& j) {  // max_pool, global_avg_pool
    j["in"] = st.in;
    j["out"] = st.out;
  }

  const runtime::graph& g_;
  std::vector<blob_source> blobs_;
  std::uint64_t data_size_ = 0;
};

// ---- reading ------------------------------------------------------------------------

/// Throws io_error "int8 model '<name>': <parts>".
class int8_file_errors {
 public:
  explicit int8_file_errors(std::string name) : name_(std::move(name)) {}

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    xquant::detail::throw_error<io_error>("int8 model '", name_, "': ", parts...);
  }
  template <class... Parts>
  void require(bool ok, const Parts&... parts) const {
    if (!ok) [[unlikely]] fail(parts...);
  }

 private:
  std::string name_;
};

/// An error's message without the "xquant: " every message starts with (to nest it).
inline std::string without_prefix(const error& e) {
  const std::string m = e.what(), prefix = "xquant: ";
  return m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m;
}

/// One array of the data section, as the header describes it.
struct blob_entry {
  std::string where;  ///< "step 3 (conv 'layer1'): \"weights\".\"bias\"", for messages
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
};

/// Reads the header's fields with type and range checks; every failure names where it is.
class int8_header_reader {
 public:
  using json = nlohmann::json;

  int8_header_reader(const int8_file_errors& err, std::uint64_t data_size) : err_(err), data_size_(data_size) {}

  const json& member(const json& object, const char* key, const std::string& where) const {
    err_.require(object.is_object(), where, " must be a JSON object, got ", json_excerpt(object));
    const auto it = object.find(key);
    err_.require(it != object.end(), where, " has no \"", key, "\"");
    return *it;
  }

  std::uint64_t unsigned_integer(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    err_.require(v.is_number_unsigned(), where, ": \"", key, "\" must be a non-negative integer, got ",
                 json_excerpt(v));
    return v.get<std::uint64_t>();
  }

  std::size_t index(const json& object, const char* key, const std::string& where) const {
    const std::uint64_t v = unsigned_integer(object, key, where);
    err_.require(v <= std::numeric_limits<std::size_t>::max(), where, ": \"", key, "\" ", v, " is too large");
    return static_cast<std::size_t>(v);
  }

  std::int32_t int32(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    bool ok = false;
    std::int64_t x = 0;
    if (v.is_number_unsigned()) {
      ok = v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
      x = ok ? static_cast<std::int64_t>(v.get<std::uint64_t>()) : 0;
    } else if (v.is_number_integer()) {
      x = v.get<std::int64_t>();
      ok = x >= std::numeric_limits<std::int32_t>::min() && x <= std::numeric_limits<std::int32_t>::max();
    }
    err_.require(ok, where, ": \"", key, "\" must be a 32-bit integer, got ", json_excerpt(v));
    return static_cast<std::int32_t>(x);
  }

  float float32(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    err_.require(v.is_number(), where, ": \"", key, "\" must be a number, got ", json_excerpt(v));
    const double d = v.get<double>();
    err_.require(std::isfinite(d) && std::abs(d) <= std::numeric_limits<float>::max(), where, ": \"", key, "\" ",
                 json_excerpt(v), " is not a finite float32");
    return static_cast<float>(d);
  }

  bool boolean(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    err_.require(v.is_boolean(), where, ": \"", key, "\" must be true or false, got ", json_excerpt(v));
    return v.get<bool>();
  }

  const std::string& string(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    err_.require(v.is_string(), where, ": \"", key, "\" must be a string, got ", json_excerpt(v));
    return v.get_ref<const std::string&>();
  }

  const json& array(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    err_.require(v.is_array(), where, ": \"", key, "\" must be an array, got ", json_excerpt(v));
    return v;
  }

  /// A blob of exactly `expected` bytes inside the data section, 64-aligned.
  blob_entry blob(const json& weights, const char* key, std::uint64_t expected, const char* rule,
                  const std::string& where) const {
    blob_entry b;
    b.where = where + ": \"weights\".\"" + key + "\"";
    const json& j = member(weights, key, where + ": \"weights\"");
    b.offset = unsigned_integer(j, "offset", b.where);
    b.size = unsigned_integer(j, "size", b.where);
    const std::uint64_t crc = unsigned_integer(j, "crc32", b.where);
    err_.require(crc <= 0xFFFFFFFFu, b.where, ": \"crc32\" ", crc, " is not a 32-bit value");
    b.crc = static_cast<std::uint32_t>(crc);
    err_.require(b.size == expected, b.where, ": size ", b.size, " bytes, expected ", expected, " (", rule, ")");
    err_.require(b.offset % int8_alignment == 0, b.where, ": offset ", b.offset, " is not a multiple of ",
                 int8_alignment);
    err_.require(b.offset <= data_size_ && b.size <= data_size_ - b.offset, b.where, ": bytes [", b.offset, ", ",
                 b.offset, " + ", b.size, ") lie outside the data section of ", data_size_, " bytes");
    return b;
  }

 private:
  const int8_file_errors& err_;
  std::uint64_t data_size_;
};

/// A weighted step's numbers from the header; its arrays are read once every blob is known
/// to be sound.
struct pending_weights {
  std::size_t step = 0;
  std::string where;
  blob_entry weight, bias, scale;
};

class int8_model_decoder {
 public:
  using json = nlohmann::json;

  int8_model_decoder(std::span<const unsigned char> bytes, const int8_file_errors& err, bool verify_checksums)
      : bytes_(bytes), err_(err), verify_checksums_(verify_checksums) {}

  runtime::graph decode(json* metadata) {
    const json header = parse_preamble_and_header();
    const int8_header_reader r(err_, data_size_);
    read_graph(header, r);
    check_data_section();
    load_arrays();
    try {
      runtime::validate(g_);
    } catch (const error& e) {
      err_.fail(without_prefix(e));
    }
    if (metadata != nullptr) {
      const auto it = header.find("metadata");
      *metadata = it == header.end() ? json::object() : *it;
    }
    return std::move(g_);
  }

 private:
  json parse_preamble_and_header() {
    const std::size_t file_size = bytes_.size();
    const unsigned char* b = bytes_.data();
    err_.require(file_size >= int8_preamble_size, "file is truncated: ", file_size, " bytes, shorter than the ",
                 int8_preamble_size, "-byte preamble");
    err_.require(std::memcmp(b, int8_model_magic, sizeof int8_model_magic) == 0,
                 "not an xquant int8 model (wrong magic bytes)");
    const std::uint64_t header_size = le::get_u64(b + 8);
    err_.require(le::get_u32(b + 20) == 0, "reserved preamble bytes are not zero (corrupt file)");
    err_.require(header_size <= file_size - int8_preamble_size, "file is truncated or corrupt: the header of ",
                 header_size, " bytes does not fit in the ", file_size, "-byte file");
    const auto* text = reinterpret_cast<const char*>(b + int8_preamble_size);
    err_.require(!verify_checksums_ || crc32(text, header_size) == le::get_u32(b + 16),
                 "header checksum mismatch (corrupt file)");
    json header;
    try {
      // Copying or destroying a JSON value recurses: limit the nesting.
      const auto limit_depth = [&](int depth, json::parse_event_t, json&) {
        err_.require(depth <= int8_max_json_depth, "header is nested deeper than ", int8_max_json_depth, " levels");
        return true;
      };
      header = json::parse(text, text + header_size, limit_depth);
    } catch (const json::exception& e) {
      err_.fail("header is not valid JSON: ", e.what());
    }
    err_.require(header.is_object(), "header must be a JSON object, got ", json_excerpt(header));
    const auto format = header.find("format");
    err_.require(
        format != header.end() && format->is_string() && format->get_ref<const std::string&>() == int8_model_format,
        "header format is ", format == header.end() ? std::string("missing") : json_excerpt(*format), ", expected \"",
        int8_model_format, "\"");
    const auto version = header.find("version");
    err_.require(
        version != header.end() && version->is_number_integer() && version->get<std::int64_t>() == int8_model_version,
        "unsupported version ", version == header.end() ? std::string("(missing)") : json_excerpt(*version),
        " (this build reads version ", int8_model_version, ")");
    data_start_ = int8_preamble_size + static_cast<std::size_t>(header_size);
    err_.require(data_start_ % int8_alignment == 0, "the data section starts at byte ", data_start_,
                 ", which is not a multiple of ", int8_alignment);
    const int8_header_reader r(err_, 0);
    data_size_ = r.unsigned_integer(header, "data_size", "header");
    const std::uint64_t available = file_size - data_start_;
    err_.require(data_size_ <= available, "file is truncated: the data section should be ", data_size_,
                 " bytes, the file has ", available);
    err_.require(data_size_ == available, "file has ", available - data_size_,
                 " unexpected bytes after the data section (corrupt file)");
    const auto meta = header.find("metadata");
    err_.require(meta == header.end() || meta->is_object(), "\"metadata\" must be a JSON object");
    return header;
  }

  void read_graph(const json& header, const int8_header_reader& r) {
    const json& input = r.member(header, "input", "header");
    g_.input_c = r.index(input, "c", "\"input\"");
    g_.input_h = r.index(input, "h", "\"input\"");
    g_.input_w = r.index(input, "w", "\"input\"");
    g_.output = r.index(header, "output", "header");
    const json& values = r.array(header, "values", "header");
    g_.values.reserve(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) g_.values.push_back(read_value(values[i], i, r));
    const json& steps = r.array(header, "steps", "header");
    g_.steps.reserve(steps.size());
    g_.step_names.reserve(steps.size());
    for (std::size_t i = 0; i < steps.size(); ++i) read_step(steps[i], i, r);
  }

  static runtime::value_info read_value(const json& j, std::size_t i, const int8_header_reader& r) {
    const std::string where = "value " + std::to_string(i);
    runtime::value_info v;
    v.h = r.index(j, "h", where);
    v.w = r.index(j, "w", where);
    v.c = r.index(j, "c", where);
    v.flat = r.boolean(j, "flat", where);
    v.flat_c = r.index(j, "flat_c", where);
    v.grid.scale = r.float32(j, "scale", where);
    v.grid.zero_point = r.int32(j, "zero_point", where);
    v.grid.qmin = r.int32(j, "qmin", where);
    v.grid.qmax = r.int32(j, "qmax", where);
    if (j.contains("view_of")) {
      v.storage_of = r.index(j, "view_of", where);
      // npos means "not a view"; a file that says view_of npos is not shortened to that.
      if (v.storage_of == runtime::value_info::npos) v.storage_of = runtime::value_info::npos - 1;
    }
    return v;
  }

  // Emplaces the concrete step: moving a whole step variant makes GCC 12 report
  // -Wmaybe-uninitialized false positives for the alternatives it does not hold.
  template <class Step>
  void push_step(Step&& s) {
    g_.steps.emplace_back(std::in_place_type<std::decay_t<Step>>, std::forward<Step>(s));
  }

  void read_step(const json& j, std::size_t i, const int8_header_reader& r) {
    std::string where = "step " + std::to_string(i);
    const std::string& kind = r.string(j, "kind", where);
    const std::string& name = r.string(j, "name", where);
    where += " (" + kind + " '" + name + "')";
    g_.step_names.push_back(name);
    if (kind == "quantize") {
      push_step(runtime::quantize_step{r.index(j, "out", where)});
    } else if (kind == "conv") {
      runtime::conv_step s;
      s.in = r.index(j, "in", where);
      s.out = r.index(j, "out", where);
      s.kernel = r.index(j, "kernel", where);
      s.stride = r.index(j, "stride", where);
      s.padding = r.index(j, "padding", where);
      push_weighted(std::move(s), j, where, r);
    } else if (kind == "depthwise") {
      runtime::depthwise_step s;
      s.in = r.index(j, "in", where);
      s.out = r.index(j, "out", where);
      s.stride = r.index(j, "stride", where);
      push_weighted(std::move(s), j, where, r);
    } else if (kind == "dense") {
      runtime::dense_step s;
      s.in = r.index(j, "in", where);
      s.out = r.index(j, "out", where);
      push_weighted(std::move(s), j, where, r);
    } else if (kind == "add") {
      runtime::add_step s;
      s.a = r.index(j, "a", where);
      s.b = r.index(j, "b", where);
      s.out = r.index(j, "out", where);
      s.act = read_activation(r.string(j, "activation", where), where);
      push_step(s);
    } else if (kind == "max_pool") {
      push_step(runtime::max_pool_step{r.index(j, "in", where), r.index(j, "out", where)});
    } else if (kind == "global_avg_pool") {
      push_step(runtime::global_avg_pool_step{r.index(j, "in", where), r.index(j, "out", where)});
    } else if (kind == "concat") {
      runtime::concat_step s;
      const json& inputs = r.array(j, "inputs", where);
      err_.require(inputs.size() <= runtime::max_graph_nodes, where, ": ", inputs.size(), " inputs; at most ",
                   runtime::max_graph_nodes);
      for (std::size_t k = 0; k < inputs.size(); ++k) {
        const json& v = inputs[k];
        err_.require(v.is_number_unsigned() && v.get<std::uint64_t>() <= std::numeric_limits<std::size_t>::max(),
                     where, ": \"inputs\"[", k, "] must be a value index, got ", json_excerpt(v));
        s.inputs.push_back(static_cast<std::size_t>(v.get<std::uint64_t>()));
      }
      s.out = r.index(j, "out", where);
      push_step(std::move(s));
    } else {
      err_.fail(where, ": unknown step kind '", kind, "'");
    }
  }

  runtime::activation read_activation(const std::string& name, const std::string& where) const {
    for (int a = 0; a < 3; ++a) {
      if (name == int8_activation_names[a]) return static_cast<runtime::activation>(a);
    }
    err_.fail(where, ": unknown activation '", name, "' (none, relu or relu6)");
  }

  template <class Step>
  void push_weighted(Step s, const json& j, const std::string& where, const int8_header_reader& r) {
    const json& w = r.member(j, "weights", where);
    const std::string wwhere = where + ": \"weights\"";
    s.w.out = r.index(w, "out", wwhere);
    s.w.depth = r.index(w, "depth", wwhere);
    s.w.requant.zero_point = r.int32(w, "zero_point", wwhere);
    s.w.requant.qmin = r.int32(w, "qmin", wwhere);
    s.w.requant.qmax = r.int32(w, "qmax", wwhere);
    // Sizes in uint64 without overflow: out * depth <= 2^64 - 1 is checked by division.
    const std::uint64_t out = s.w.out, depth = s.w.depth;
    err_.require(depth == 0 || out <= std::numeric_limits<std::uint64_t>::max() / depth, wwhere, ": out ", out,
                 " * depth ", depth, " overflows");
    err_.require(out <= std::numeric_limits<std::uint64_t>::max() / 4, wwhere, ": out ", out, " is too large");
    pending_weights p;
    p.where = where;
    p.weight = r.blob(w, "weight", out * depth, "out * depth", where);
    p.bias = r.blob(w, "bias", 4 * out, "4 * out", where);
    p.scale = r.blob(w, "scale", 4 * out, "4 * out", where);
    p.step = g_.steps.size();
    push_step(std::move(s));
    pending_.push_back(std::move(p));
  }

  /// No overlaps, zero gaps (every byte of the file is checked), then the blob CRCs.
  void check_data_section() const {
    std::vector<const blob_entry*> all;
    for (const pending_weights& p : pending_) {
      for (const blob_entry* b : {&p.weight, &p.bias, &p.scale}) {
        if (b->size > 0) all.push_back(b);
      }
    }
    std::sort(all.begin(), all.end(), [](const blob_entry* x, const blob_entry* y) { return x->offset < y->offset; });
    const unsigned char* data = bytes_.data() + data_start_;
    const auto zero = [&](std::uint64_t from, std::uint64_t to) {
      return std::all_of(data + from, data + to, [](unsigned char c) { return c == 0; });
    };
    std::uint64_t covered = 0;
    for (const blob_entry* b : all) {
      err_.require(covered <= b->offset, b->where, " overlaps the array before it in the data section");
      err_.require(zero(covered, b->offset), "nonzero padding before ", b->where, " (corrupt file)");
      covered = b->offset + b->size;
    }
    err_.require(zero(covered, data_size_), "nonzero padding at the end of the data section (corrupt file)");
    if (!verify_checksums_) return;
    for (const blob_entry* b : all) {
      err_.require(crc32(data + b->offset, static_cast<std::size_t>(b->size)) == b->crc, b->where,
                   ": data checksum mismatch (corrupt file)");
    }
  }

  /// Copies the arrays (sizes bounded by the file) and computes the fixed-point multipliers.
  void load_arrays() {
    for (const pending_weights& p : pending_) {
      std::visit(
          [&](auto& st) {
            if constexpr (requires { st.w; }) load_weights(p, st.w);
          },
          g_.steps[p.step]);
    }
  }

  void load_weights(const pending_weights& p, runtime::lowered_weighted& w) const {
    const unsigned char* data = bytes_.data() + data_start_;
    w.weight.resize(static_cast<std::size_t>(p.weight.size));
    if (!w.weight.empty()) std::memcpy(w.weight.data(), data + p.weight.offset, w.weight.size());
    w.bias.resize(w.out);
    from_le_words(data + p.bias.offset, w.out, w.bias.data());
    w.requant.scale.resize(w.out);
    from_le_words(data + p.scale.offset, w.out, w.requant.scale.data());
    try {
      w.requant.fixed = kernels::quantize_multipliers(w.requant.scale);
    } catch (const error& e) {
      err_.fail(p.where, ": ", without_prefix(e));
    }
  }

  std::span<const unsigned char> bytes_;
  const int8_file_errors& err_;
  bool verify_checksums_;
  std::size_t data_start_ = 0;
  std::uint64_t data_size_ = 0;
  runtime::graph g_;
  std::vector<pending_weights> pending_;
};

/// Decodes a whole file's bytes. verify_checksums = false skips the CRC comparisons (and
/// nothing else): for fuzzing only, so that mutated inputs reach the later checks.
inline runtime::graph decode_int8_model(std::span<const unsigned char> bytes, const std::string& name,
                                        nlohmann::json* metadata, bool verify_checksums = true) {
  const int8_file_errors err(name);
  try {
    return int8_model_decoder(bytes, err, verify_checksums).decode(metadata);
  } catch (const nlohmann::json::exception& e) {  // not expected: every access is checked first
    err.fail("malformed header: ", e.what());
  }
}

}  // namespace detail

namespace detail {

/// Validates g and metadata, lays the file out and calls write(writer, header_text).
template <class Write>
void write_int8_model(const runtime::graph& g, const nlohmann::json& metadata, Write&& write) {
  check(metadata.is_object(), "int8 model metadata must be a JSON object, got ", metadata.type_name());
  runtime::validate(g);
  int8_writer writer(g);
  const std::string text = writer.header(metadata);
  write(writer, text);
}

}  // namespace detail

/// The bytes of the int8 model file of `g` (what save_int8_model writes). Throws
/// shape_error / value_error when runtime::validate rejects g, value_error when metadata is
/// not a JSON object or a name is not valid UTF-8.
inline std::vector<unsigned char> encode_int8_model(const runtime::graph& g,
                                                    const nlohmann::json& metadata = nlohmann::json::object()) {
  std::vector<unsigned char> out;
  detail::write_int8_model(g, metadata, [&](const detail::int8_writer& writer, const std::string& text) {
    writer.write(text, [&](const unsigned char* p, std::size_t n) { out.insert(out.end(), p, p + n); });
  });
  return out;
}

/// Writes `g` and `metadata` (a JSON object) to `path` atomically. Throws as
/// encode_int8_model before touching the file system, and io_error when the file cannot be
/// written (the previous file, if any, is then untouched and no temporary is left).
inline void save_int8_model(const std::filesystem::path& path, const runtime::graph& g,
                            const nlohmann::json& metadata = nlohmann::json::object()) {
  detail::write_int8_model(g, metadata, [&](const detail::int8_writer& writer, const std::string& text) {
    atomic_file file(path);
    writer.write(text, [&](const unsigned char* p, std::size_t n) { file.write(p, n); });
    file.commit();
  });
}

/// Reads and validates an int8 model file (see the header comment); throws io_error naming
/// the file and the first problem.
inline runtime::graph load_int8_model(const std::filesystem::path& path) {
  return detail::decode_int8_model(read_file(path), path.string(), nullptr);
}

/// As above, and stores the file's metadata object in `metadata`.
inline runtime::graph load_int8_model(const std::filesystem::path& path, nlohmann::json& metadata) {
  return detail::decode_int8_model(read_file(path), path.string(), &metadata);
}

/// As above from a file's bytes in memory; `name` stands for the file in messages.
inline runtime::graph load_int8_model(std::span<const unsigned char> bytes, const std::string& name = "<memory>") {
  return detail::decode_int8_model(bytes, name, nullptr);
}

}  // namespace xquant::io
