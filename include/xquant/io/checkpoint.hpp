#pragma once
// Checkpoints: a module's parameters and buffers, optionally an optimizer's state, and a
// user metadata object (epoch, step, seed, recipe, ...) in one binary file, written
// atomically and validated completely before anything is loaded.
//
// ---- Format "xquant.checkpoint", version 1 ------------------------------------------
//
// Every integer and float in the file is little-endian.
//
//   offset   size  content
//   0        8     magic: 'X' 'Q' 'C' 'K' 'P' 'T' 0x00 0x01
//   8        8     H, the byte length of the JSON header (uint64)
//   16       4     CRC-32 (zlib's, io/crc32.hpp) of the H header bytes (uint32)
//   20       4     reserved, zero
//   24       H     the JSON header, UTF-8, padded with spaces so that 24 + H is a
//                  multiple of 64
//   24 + H   D     the data section: each tensor's float32 values in row-major order at
//                  its "offset", which is relative to the start of the data section and
//                  a multiple of 64, so every tensor is 64-byte aligned in the file (it
//                  can be mapped and used in place); the gaps are zero bytes; the file
//                  ends exactly at 24 + H + D
//
// The JSON header:
//
//   {
//     "format": "xquant.checkpoint",
//     "version": 1,
//     "data_size": D,
//     "parameters": [ tensor... ],      module::parameters(), in that order
//     "buffers":    [ tensor... ],      module::buffers(), in that order
//     "optimizer":  null, or {
//       "type": "sgd",                  optimizer::type()
//       "lr": 0.05,                     restored by load (it changes during training)
//       "hyper_parameters": {"momentum": 0.9, ...},   for the record, not restored
//       "counters": {"fc.weight.step": 1234, ...},    optimizer::counters()
//       "state": [ tensor... ]          optimizer::state(): "fc.weight.momentum_buffer", ...
//     },
//     "metadata": { ... }               the caller's object, returned by load
//   }
//
//   tensor: {"name": "conv1.weight", "dtype": "float32", "shape": [32, 1, 3, 3],
//            "offset": 0, "size": 1152, "crc32": 2840395119}
//            size is in bytes (4 * the product of shape); crc32 covers those bytes.
//
// ---- Loading ----------------------------------------------------------------------
//
// load_checkpoint reads the whole file and checks, in this order, before it writes a
// single value into the module or the optimizer: the file is long enough for the
// preamble; the magic; the reserved word; that the header fits in the file; the
// header's CRC; that the header is a valid JSON object; format and version; that the
// data section ends exactly at the end of the file; every tensor entry (dtype float32,
// size consistent with shape, offset 64-aligned and inside the data section, unique
// names, no two tensors overlapping); that the padding between tensors is zero; every
// tensor's CRC; then the names and shapes against the module (and the optimizer, its
// type and counters): every model tensor must be in the file with the same shape, and
// the file may hold no tensor the model lacks. load_options::allow_missing_buffers relaxes
// one rule, for loading an FP32 checkpoint into a QAT model: a model *buffer* (e.g. a
// quantizer's scale and zero point) the file lacks is left at its current value; every
// parameter is still required, and the file still may hold nothing the model lacks. The first problem is thrown as io_error
// naming the file and the tensor, e.g.
//   "checkpoint 'run/last.xqckpt': parameter 'conv1.weight': file has [32, 1, 3, 3],
//    model has [32, 1, 5, 5]".
// Readers ignore header keys they do not know, so version 1 can gain optional keys; a
// change that old readers would misread bumps the version.
// Every offset is bounds-checked with overflow-free arithmetic, so a truncated or
// corrupt file throws; it never crashes or reads out of bounds. Because of the CRCs a
// changed byte anywhere in the file is detected, not silently loaded.
//
// Byte order: the format is little-endian. On a big-endian host the float data is
// byte-swapped on the way in and out (detail::host_to_le / le_to_host), so files are
// portable; mixed-endian hosts are rejected at compile time.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/io/crc32.hpp"
#include "xquant/io/file.hpp"
#include "xquant/io/binary_format.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/optim/optimizer.hpp"

namespace xquant::io {

inline constexpr char checkpoint_magic[8] = {'X', 'Q', 'C', 'K', 'P', 'T', '\0', '\1'};
inline constexpr std::string_view checkpoint_format = "xquant.checkpoint";
inline constexpr int checkpoint_version = 1;
inline constexpr std::size_t checkpoint_preamble_size = 24;
inline constexpr std::size_t checkpoint_alignment = 64;
inline constexpr int checkpoint_max_json_depth = 64;

namespace detail {

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "xquant checkpoints support little- and big-endian hosts only");

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;  // writing: keys in the documented order

inline std::uint32_t byteswap32(std::uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0x0000FF00u) | ((v << 8) & 0x00FF0000u) | (v << 24);
}

/// Copies n floats of a host with byte order `Host` into little-endian bytes.
template <std::endian Host = std::endian::native>
void host_to_le(const float* src, std::size_t n, unsigned char* dst) {
  if (n == 0) return;
  if constexpr (Host == std::endian::little) {
    std::memcpy(dst, src, n * sizeof(float));
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t v = byteswap32(std::bit_cast<std::uint32_t>(src[i]));
      std::memcpy(dst + 4 * i, &v, 4);
    }
  }
}

/// Copies n little-endian floats into floats of a host with byte order `Host`.
template <std::endian Host = std::endian::native>
void le_to_host(const unsigned char* src, std::size_t n, float* dst) {
  if (n == 0) return;
  if constexpr (Host == std::endian::little) {
    std::memcpy(dst, src, n * sizeof(float));
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t v;
      std::memcpy(&v, src + 4 * i, 4);
      dst[i] = std::bit_cast<float>(byteswap32(v));
    }
  }
}

/// Calls sink(bytes, size) over the little-endian bytes of n floats: one call on a
/// little-endian host, chunks through a small buffer otherwise.
template <class Sink>
void for_le_bytes(const float* p, std::size_t n, Sink&& sink) {
  if constexpr (std::endian::native == std::endian::little) {
    sink(reinterpret_cast<const unsigned char*>(p), n * sizeof(float));
  } else {
    unsigned char chunk[4096];
    constexpr std::size_t per_chunk = sizeof chunk / sizeof(float);
    for (std::size_t i = 0; i < n; i += per_chunk) {
      const std::size_t k = std::min(per_chunk, n - i);
      host_to_le(p + i, k, chunk);
      sink(chunk, k * sizeof(float));
    }
  }
}

inline std::uint64_t align_up(std::uint64_t v) {
  return (v + checkpoint_alignment - 1) / checkpoint_alignment * checkpoint_alignment;
}

/// One tensor to write: a name and contiguous float32 data of a shape.
struct tensor_source {
  std::string name;
  const array<float>* value;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
};

/// One tensor entry of a file's header, validated against the file.
struct tensor_entry {
  std::string name;
  shape_t shape;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
  const char* kind = "";  ///< "parameter", "buffer", "optimizer state": for messages
};

/// A checkpoint file whose structure and checksums have been validated.
struct parsed_checkpoint {
  std::vector<unsigned char> bytes;
  std::size_t data_start = 0;
  std::vector<tensor_entry> parameters, buffers, optimizer_state;
  bool has_optimizer = false;
  std::string optimizer_type;
  double optimizer_lr = 0;
  std::vector<std::pair<std::string, std::uint64_t>> counters;
  json metadata;
};

/// Throws io_error "checkpoint '<path>': <parts>".
class checkpoint_errors {
 public:
  explicit checkpoint_errors(const std::filesystem::path& path) : path_(path.string()) {}

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    xquant::detail::throw_error<io_error>("checkpoint '", path_, "': ", parts...);
  }
  template <class... Parts>
  void require(bool ok, const Parts&... parts) const {
    if (!ok) [[unlikely]] fail(parts...);
  }

  const json& member(const json& object, const char* key, std::string_view where) const {
    require(object.is_object(), where, " must be a JSON object");
    const auto it = object.find(key);
    require(it != object.end(), where, " has no \"", key, "\"");
    return *it;
  }

  std::uint64_t unsigned_integer(const json& value, std::string_view where, const char* key) const {
    require(value.is_number_unsigned(), where, ": \"", key, "\" must be a non-negative integer, got ",
            json_excerpt(value));
    return value.get<std::uint64_t>();
  }

 private:
  std::string path_;
};

inline std::string describe(const char* section, const std::string& name) {
  return std::string(section) + " '" + name + "'";
}

/// Validates one section's tensor list: "parameters", "buffers" or the optimizer's
/// "state", whose entries are called `kind` ("parameter", ...) in messages.
inline std::vector<tensor_entry> parse_tensor_list(const json& list, const char* section, const char* kind,
                                                   std::uint64_t data_size, const checkpoint_errors& err) {
  err.require(list.is_array(), "\"", section, "\" must be a JSON array");
  std::vector<tensor_entry> out;
  out.reserve(list.size());
  std::unordered_set<std::string> names;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    const std::string where_index = std::string(kind) + " entry " + std::to_string(i);
    const json& name = err.member(t, "name", where_index);
    err.require(name.is_string() && !name.get_ref<const std::string&>().empty(), where_index,
                ": \"name\" must be a non-empty string");
    tensor_entry e;
    e.name = name.get<std::string>();
    e.kind = kind;
    const std::string where = describe(kind, e.name);

    const json& dtype = err.member(t, "dtype", where);
    err.require(dtype.is_string(), where, ": \"dtype\" must be a string");
    err.require(dtype.get_ref<const std::string&>() == "float32", where, ": dtype '",
                dtype.get_ref<const std::string&>(), "' is not supported (only float32)");

    const json& shape = err.member(t, "shape", where);
    err.require(shape.is_array(), where, ": \"shape\" must be an array of non-negative integers");
    std::uint64_t count = 1;
    bool overflow = false;
    for (const json& d : shape) {
      const std::uint64_t dim = err.unsigned_integer(d, where, "shape");
      err.require(dim <= std::numeric_limits<std::size_t>::max(), where, ": dimension ", dim, " is too large");
      e.shape.push_back(static_cast<std::size_t>(dim));
      if (dim != 0 && count > std::numeric_limits<std::uint64_t>::max() / dim) overflow = true;
      count *= dim;
    }
    overflow = overflow || count > std::numeric_limits<std::uint64_t>::max() / sizeof(float);
    err.require(!overflow, where, ": shape ", shape_string(e.shape), " is too large");

    e.size = err.unsigned_integer(err.member(t, "size", where), where, "size");
    e.offset = err.unsigned_integer(err.member(t, "offset", where), where, "offset");
    err.require(e.size == count * sizeof(float), where, ": size ", e.size, " bytes does not match shape ",
                shape_string(e.shape), " of float32 (", count * sizeof(float), " bytes)");
    err.require(e.offset % checkpoint_alignment == 0, where, ": offset ", e.offset, " is not a multiple of ",
                checkpoint_alignment);
    err.require(e.offset <= data_size && e.size <= data_size - e.offset, where, ": bytes [", e.offset, ", ",
                e.offset, " + ", e.size, ") lie outside the data section of ", data_size, " bytes");
    const std::uint64_t crc = err.unsigned_integer(err.member(t, "crc32", where), where, "crc32");
    err.require(crc <= 0xFFFFFFFFu, where, ": \"crc32\" ", crc, " is not a 32-bit value");
    e.crc = static_cast<std::uint32_t>(crc);
    err.require(names.insert(e.name).second, "two entries of \"", section, "\" are named '", e.name, "'");
    out.push_back(std::move(e));
  }
  return out;
}

/// Parses and validates everything that does not depend on a model (see the header
/// comment for the order of the checks).
inline parsed_checkpoint parse_checkpoint(std::vector<unsigned char> bytes, const checkpoint_errors& err) {
  parsed_checkpoint ck;
  ck.bytes = std::move(bytes);
  const std::size_t file_size = ck.bytes.size();
  const unsigned char* b = ck.bytes.data();

  err.require(file_size >= checkpoint_preamble_size, "file is truncated: ", file_size,
              " bytes, shorter than the ", checkpoint_preamble_size, "-byte preamble");
  err.require(std::memcmp(b, checkpoint_magic, sizeof checkpoint_magic) == 0,
              "not an xquant checkpoint (wrong magic bytes)");
  const std::uint64_t header_size = le::get_u64(b + 8);
  const std::uint32_t header_crc = le::get_u32(b + 16);
  err.require(le::get_u32(b + 20) == 0, "reserved preamble bytes are not zero (corrupt file)");
  err.require(header_size <= file_size - checkpoint_preamble_size, "file is truncated or corrupt: the header of ",
              header_size, " bytes does not fit in the ", file_size, "-byte file");
  const auto* header_begin = reinterpret_cast<const char*>(b + checkpoint_preamble_size);
  err.require(crc32(header_begin, header_size) == header_crc, "header checksum mismatch (corrupt file)");

  json header;
  try {
    // A depth limit: copying or printing a JSON value recurses, so a header nested a
    // million levels deep must not get that far.
    const auto limit_depth = [&](int depth, json::parse_event_t, json&) {
      err.require(depth <= checkpoint_max_json_depth, "header is nested deeper than ", checkpoint_max_json_depth,
                  " levels");
      return true;
    };
    header = json::parse(header_begin, header_begin + header_size, limit_depth);
  } catch (const json::exception& e) {
    err.fail("header is not valid JSON: ", e.what());
  }
  err.require(header.is_object(), "header must be a JSON object");
  const json& format = err.member(header, "format", "header");
  err.require(format.is_string() && format.get_ref<const std::string&>() == checkpoint_format,
              "header format is ", json_excerpt(format), ", expected \"", checkpoint_format, "\"");
  const json& version = err.member(header, "version", "header");
  err.require(version.is_number_integer(), "header \"version\" must be an integer");
  err.require(version.get<std::int64_t>() == checkpoint_version, "unsupported version ", json_excerpt(version),
              " (this build reads version ", checkpoint_version, ")");

  ck.data_start = checkpoint_preamble_size + static_cast<std::size_t>(header_size);
  err.require(ck.data_start % checkpoint_alignment == 0, "the data section starts at byte ", ck.data_start,
              ", which is not a multiple of ", checkpoint_alignment);
  const std::uint64_t data_size = err.unsigned_integer(err.member(header, "data_size", "header"), "header",
                                                       "data_size");
  const std::uint64_t available = file_size - ck.data_start;
  err.require(data_size <= available, "file is truncated: the data section should be ", data_size,
              " bytes, the file has ", available);
  err.require(data_size == available, "file has ", available - data_size,
              " unexpected bytes after the data section (corrupt file)");

  ck.parameters =
      parse_tensor_list(err.member(header, "parameters", "header"), "parameters", "parameter", data_size, err);
  ck.buffers = parse_tensor_list(err.member(header, "buffers", "header"), "buffers", "buffer", data_size, err);

  const auto opt_it = header.find("optimizer");
  if (opt_it != header.end() && !opt_it->is_null()) {
    const json& opt = *opt_it;
    ck.has_optimizer = true;
    const json& type = err.member(opt, "type", "optimizer");
    err.require(type.is_string(), "optimizer \"type\" must be a string");
    ck.optimizer_type = type.get<std::string>();
    const json& lr = err.member(opt, "lr", "optimizer");
    err.require(lr.is_number() && std::isfinite(lr.get<double>()) && lr.get<double>() >= 0,
                "optimizer \"lr\" must be a finite number >= 0, got ", json_excerpt(lr));
    ck.optimizer_lr = lr.get<double>();
    const json& counters = err.member(opt, "counters", "optimizer");
    err.require(counters.is_object(), "optimizer \"counters\" must be a JSON object");
    for (const auto& [name, value] : counters.items()) {
      ck.counters.emplace_back(name, err.unsigned_integer(value, "optimizer counter '" + name + "'", "value"));
    }
    ck.optimizer_state =
        parse_tensor_list(err.member(opt, "state", "optimizer"), "state", "optimizer state", data_size, err);
  }

  const auto meta_it = header.find("metadata");
  ck.metadata = meta_it == header.end() ? json::object() : std::move(*meta_it);
  err.require(ck.metadata.is_object(), "\"metadata\" must be a JSON object");

  // No two tensors may share bytes.
  std::vector<const tensor_entry*> all;
  for (const auto* list : {&ck.parameters, &ck.buffers, &ck.optimizer_state}) {
    for (const auto& e : *list) {
      if (e.size > 0) all.push_back(&e);
    }
  }
  std::sort(all.begin(), all.end(), [](const tensor_entry* x, const tensor_entry* y) { return x->offset < y->offset; });
  for (std::size_t i = 1; i < all.size(); ++i) {
    err.require(all[i - 1]->offset + all[i - 1]->size <= all[i]->offset, all[i - 1]->kind, " '", all[i - 1]->name,
                "' and ", all[i]->kind, " '", all[i]->name, "' overlap in the data section");
  }

  // The bytes between tensors are zero (so that every byte of the file is checked).
  std::uint64_t covered = 0;
  const auto gap_is_zero = [&](std::uint64_t from, std::uint64_t to) {
    return std::all_of(b + ck.data_start + from, b + ck.data_start + to, [](unsigned char c) { return c == 0; });
  };
  for (const auto* e : all) {
    err.require(gap_is_zero(covered, e->offset), "nonzero padding before ", e->kind, " '", e->name,
                "' (corrupt file)");
    covered = e->offset + e->size;
  }
  err.require(gap_is_zero(covered, data_size), "nonzero padding at the end of the data section (corrupt file)");

  // Checksums last: they read the data.
  for (const auto* list : {&ck.parameters, &ck.buffers, &ck.optimizer_state}) {
    for (const auto& e : *list) {
      const std::uint32_t actual = crc32(b + ck.data_start + e.offset, static_cast<std::size_t>(e.size));
      err.require(actual == e.crc, e.kind, " '", e.name, "': data checksum mismatch (corrupt file)");
    }
  }
  return ck;
}

/// A destination in the model or optimizer for one named tensor.
struct tensor_target {
  std::string name;
  array<float>* value;
};

struct tensor_copy {
  const tensor_entry* from;
  array<float>* to;
};

/// Matches the file's entries of one section against the model's tensors: every model
/// tensor present with the same shape, no file tensor the model lacks. Appends the
/// copies to make; throws on the first mismatch.
inline void match_section(const std::vector<tensor_entry>& file, const std::vector<tensor_target>& model,
                          const char* what, const char* owner, const checkpoint_errors& err,
                          std::vector<tensor_copy>& copies, std::vector<std::string>* missing = nullptr) {
  std::unordered_map<std::string_view, const tensor_entry*> by_name;
  for (const auto& e : file) by_name.emplace(e.name, &e);
  for (const auto& t : model) {
    const auto it = by_name.find(t.name);
    if (it == by_name.end() && missing != nullptr) {
      missing->push_back(t.name);
      continue;
    }
    err.require(it != by_name.end(), what, " '", t.name, "' is missing from the checkpoint");
    const shape_t model_shape = shape_of(*t.value);
    err.require(it->second->shape == model_shape, what, " '", t.name, "': file has ",
                shape_string(it->second->shape), ", ", owner, " has ", shape_string(model_shape));
    copies.push_back({it->second, t.value});
    by_name.erase(it);
  }
  for (const auto& e : file) {
    err.require(!by_name.contains(e.name), "checkpoint has ", what, " '", e.name, "', which the ", owner,
                " does not have");
  }
}

inline std::vector<tensor_target> model_parameters(nn::module& model) {
  std::vector<tensor_target> out;
  for (auto& p : model.parameters()) out.push_back({p.name, &p.var->value()});
  return out;
}
inline std::vector<tensor_target> model_buffers(nn::module& model) {
  std::vector<tensor_target> out;
  for (auto& b : model.buffers()) out.push_back({b.name, b.value});
  return out;
}

inline ordered_json tensor_list_json(const std::vector<tensor_source>& list) {
  ordered_json out = ordered_json::array();
  for (const auto& t : list) {
    out.push_back({{"name", t.name},
                   {"dtype", "float32"},
                   {"shape", shape_of(*t.value)},
                   {"offset", t.offset},
                   {"size", t.size},
                   {"crc32", t.crc}});
  }
  return out;
}

}  // namespace detail

/// Options of load_checkpoint. The default is strict.
struct load_options {
  /// Model buffers absent from the file keep their current values (FP32 checkpoint into a
  /// QAT model: the quantizer buffers are new). Parameters are always required.
  bool allow_missing_buffers = false;
  /// When set, receives the names of the model buffers that were not in the file.
  std::vector<std::string>* missing_buffers = nullptr;
};

namespace detail {

inline nlohmann::json load(const std::filesystem::path& path, nn::module& model, optim::optimizer* opt,
                           const load_options* options = nullptr) {
  const checkpoint_errors err(path);
  parsed_checkpoint ck = parse_checkpoint(read_file(path), err);

  std::vector<tensor_copy> copies;
  std::vector<std::string> missing;
  const bool allow_missing = options != nullptr && options->allow_missing_buffers;
  match_section(ck.parameters, model_parameters(model), "parameter", "model", err, copies);
  match_section(ck.buffers, model_buffers(model), "buffer", "model", err, copies, allow_missing ? &missing : nullptr);
  std::vector<std::pair<std::uint64_t*, std::uint64_t>> counter_copies;
  if (opt != nullptr) {
    err.require(ck.has_optimizer, "the checkpoint holds no optimizer state");
    err.require(ck.optimizer_type == opt->type(), "the checkpoint holds ", ck.optimizer_type,
                " state, the optimizer is ", opt->type());
    std::vector<tensor_target> state;
    for (auto& s : opt->state()) state.push_back({s.name, s.value});
    match_section(ck.optimizer_state, state, "optimizer state", "optimizer", err, copies);
    std::unordered_map<std::string_view, std::uint64_t> file_counters(ck.counters.begin(), ck.counters.end());
    for (const auto& c : opt->counters()) {
      const auto it = file_counters.find(c.name);
      err.require(it != file_counters.end(), "optimizer counter '", c.name, "' is missing from the checkpoint");
      counter_copies.emplace_back(c.value, it->second);
      file_counters.erase(it);
    }
    for (const auto& [name, value] : ck.counters) {
      err.require(!file_counters.contains(name), "checkpoint has optimizer counter '", name,
                  "', which the optimizer does not have");
    }
  }

  // Everything is valid: only now is the model touched. Nothing below throws.
  for (const auto& c : copies) {
    le_to_host(ck.bytes.data() + ck.data_start + c.from->offset, c.to->size(), c.to->data());
  }
  if (opt != nullptr) {
    for (const auto& [dst, value] : counter_copies) *dst = value;
    opt->set_lr(ck.optimizer_lr);
  }
  if (options != nullptr && options->missing_buffers != nullptr) *options->missing_buffers = std::move(missing);
  return std::move(ck.metadata);
}

inline void save(const std::filesystem::path& path, nn::module& model, optim::optimizer* opt,
                 const nlohmann::json& metadata) {
  check(metadata.is_object(), "checkpoint metadata must be a JSON object, got ", metadata.type_name());
  std::vector<tensor_source> params, buffers, state;
  for (auto& p : model.parameters()) params.push_back({p.name, &p.var->value()});
  for (auto& b : model.buffers()) buffers.push_back({b.name, b.value});
  if (opt != nullptr) {
    for (auto& s : opt->state()) state.push_back({s.name, s.value});
  }

  // Lay the tensors out and checksum them.
  std::uint64_t data_size = 0;
  for (auto* list : {&params, &buffers, &state}) {
    for (auto& t : *list) {
      t.offset = align_up(data_size);
      t.size = t.value->size() * sizeof(float);
      std::uint32_t crc = 0;
      for_le_bytes(t.value->data(), t.value->size(),
                   [&](const unsigned char* p, std::size_t n) { crc = crc32(p, n, crc); });
      t.crc = crc;
      data_size = t.offset + t.size;
    }
  }

  ordered_json header = {{"format", checkpoint_format},
                         {"version", checkpoint_version},
                         {"data_size", data_size},
                         {"parameters", tensor_list_json(params)},
                         {"buffers", tensor_list_json(buffers)},
                         {"optimizer", nullptr},
                         {"metadata", ordered_json(metadata)}};
  if (opt != nullptr) {
    ordered_json hyper = ordered_json::object();
    for (const auto& [name, value] : opt->hyper_parameters()) hyper[name] = value;
    ordered_json counters = ordered_json::object();
    for (const auto& c : opt->counters()) counters[c.name] = *c.value;
    header["optimizer"] = {{"type", opt->type()},
                           {"lr", opt->lr()},
                           {"hyper_parameters", std::move(hyper)},
                           {"counters", std::move(counters)},
                           {"state", tensor_list_json(state)}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const ordered_json::exception& e) {
    xquant::detail::throw_error<value_error>("checkpoint header cannot be written (metadata or a name is not "
                                             "valid UTF-8?): ",
                                             e.what());
  }
  text.append(align_up(checkpoint_preamble_size + text.size()) - checkpoint_preamble_size - text.size(), ' ');

  unsigned char preamble[checkpoint_preamble_size] = {};
  std::memcpy(preamble, checkpoint_magic, sizeof checkpoint_magic);
  le::put_u64(preamble + 8, text.size());
  le::put_u32(preamble + 16, crc32(text.data(), text.size()));

  atomic_file file(path);
  file.write(preamble, sizeof preamble);
  file.write(text);
  std::uint64_t written = 0;
  for (auto* list : {&params, &buffers, &state}) {
    for (auto& t : *list) {
      file.write_zeros(static_cast<std::size_t>(t.offset - written));
      for_le_bytes(t.value->data(), t.value->size(),
                   [&](const unsigned char* p, std::size_t n) { file.write(p, n); });
      written = t.offset + t.size;
    }
  }
  file.commit();
}

}  // namespace detail

/// Writes the module's parameters and buffers and `metadata` (a JSON object) to `path`,
/// atomically. Throws io_error when the file cannot be written (the previous file, if
/// any, is then untouched) and value_error when metadata is not an object.
inline void save_checkpoint(const std::filesystem::path& path, nn::module& model,
                            const nlohmann::json& metadata = nlohmann::json::object()) {
  detail::save(path, model, nullptr, metadata);
}

/// As above, plus the optimizer's state (state(), counters(), lr, type), for resuming.
inline void save_checkpoint(const std::filesystem::path& path, nn::module& model, optim::optimizer& opt,
                            const nlohmann::json& metadata = nlohmann::json::object()) {
  detail::save(path, model, &opt, metadata);
}

/// Loads parameters and buffers into `model` and returns the metadata. Optimizer state
/// in the file is ignored. Throws io_error, leaving the model untouched, when the file
/// is malformed or does not match the model (see the header comment).
inline nlohmann::json load_checkpoint(const std::filesystem::path& path, nn::module& model) {
  return detail::load(path, model, nullptr);
}

/// As above with options, e.g. {.allow_missing_buffers = true} to start QAT from an FP32
/// checkpoint (the quantizer buffers the file lacks keep their initial values).
inline nlohmann::json load_checkpoint(const std::filesystem::path& path, nn::module& model,
                                      const load_options& options) {
  return detail::load(path, model, nullptr, &options);
}

/// As above, and restores the optimizer's state, counters and lr; the file must hold
/// state of the same optimizer type for the same parameter names and shapes.
inline nlohmann::json load_checkpoint(const std::filesystem::path& path, nn::module& model, optim::optimizer& opt) {
  return detail::load(path, model, &opt);
}

/// Validates a checkpoint's structure and checksums without a model and returns its
/// metadata (e.g. to read the epoch before building the model).
inline nlohmann::json read_checkpoint_metadata(const std::filesystem::path& path) {
  const detail::checkpoint_errors err(path);
  return detail::parse_checkpoint(read_file(path), err).metadata;
}

}  // namespace xquant::io
