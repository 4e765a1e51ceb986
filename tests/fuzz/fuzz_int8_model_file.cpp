// libFuzzer target: io/int8_model_file.hpp's reader on arbitrary bytes.
//
// Each input is read twice: as is (the checksums reject almost every mutation early), and
// with the CRC comparisons switched off, so that mutated headers and arrays reach the JSON,
// layout and graph checks. An input that starts with '{' is also read as
// "<JSON header> NUL <data section>" put into a well-formed container (header length, CRC
// and padding right): a mutation that changes the header's length then still reaches the
// header checks. xquant::error is the expected way to refuse; anything else
// escaping, a crash, a hang or a sanitizer report is a bug. A graph that loads must also
//   - encode again, and that file must load to a graph that encodes to the same bytes;
//   - run: runtime::validate promises that int8_model can execute it, so small enough
//     graphs are built and run on one image (ASan/UBSan watch the kernels).
//
// Byte-level mutations of JSON text mostly produce invalid JSON, which stops at the parser.
// So that the layout and graph checks get fuzzed too, the custom mutator below mutates the
// header of a split-form input as JSON half of the time: one leaf set to an interesting
// number, kind or type, or one member or element erased, duplicated or swapped.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "xquant/core/error.hpp"
#include "xquant/io/int8_model_file.hpp"
#include "xquant/runtime/int8_model.hpp"

namespace {

using namespace xquant;

/// Rough multiply-adds of one image, and whether running it stays cheap and small.
bool cheap_to_run(const runtime::graph& g) {
  std::size_t bytes = 0, work = 0;
  for (const runtime::value_info& v : g.values) bytes += v.bytes();
  for (const runtime::step& s : g.steps) {
    std::visit(
        [&](const auto& st) {
          if constexpr (requires { st.w; }) {
            const runtime::value_info& y = g.values[st.out];
            work += y.h * y.w * st.w.weight.size();
          }
        },
        s);
  }
  return bytes <= (std::size_t{1} << 20) && work <= (std::size_t{1} << 24);
}

void run_once(runtime::graph g) {
  runtime::int8_model model(std::move(g), 1);
  std::vector<float> x(model.input_size(), 0.5f), logits(model.output_size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  model.run(x, 1, logits);
}

void check_loaded(const runtime::graph& g) {
  const std::vector<unsigned char> file = io::encode_int8_model(g);
  const std::vector<unsigned char> again = io::encode_int8_model(io::load_int8_model(file, "re-encoded"));
  if (again != file) std::abort();  // load(encode(g)) must give g back
  if (cheap_to_run(g)) run_once(g);
}

/// "<header> NUL <data>" as a file: preamble, padded header, data.
std::vector<unsigned char> wrap(std::span<const unsigned char> input) {
  const auto nul = std::find(input.begin(), input.end(), 0);
  std::string header(input.begin(), nul);
  header.append((24 + header.size() + 63) / 64 * 64 - 24 - header.size(), ' ');
  std::vector<unsigned char> file(24, 0);
  std::memcpy(file.data(), io::int8_model_magic, 8);
  io::le::put_u64(file.data() + 8, header.size());
  io::le::put_u32(file.data() + 16, io::crc32(header.data(), header.size()));
  file.insert(file.end(), header.begin(), header.end());
  if (nul != input.end()) file.insert(file.end(), nul + 1, input.end());
  return file;
}

void load_and_check(std::span<const unsigned char> bytes, bool verify_checksums) {
  try {
    check_loaded(io::detail::decode_int8_model(bytes, "fuzz", nullptr, verify_checksums));
  } catch (const xquant::error&) {
    // a refused file: expected
  }
}

}  // namespace

namespace mutation {

using nlohmann::json;

struct rng {
  unsigned state;
  unsigned next(unsigned n) {  // uniform enough in [0, n)
    state = state * 1103515245u + 12345u;
    return n == 0 ? 0 : (state >> 8) % n;
  }
};

json interesting_value(rng& r, const json& old) {
  static const json values[] = {0,
                                1,
                                2,
                                3,
                                9,
                                64,
                                255,
                                256,
                                -1,
                                -128,
                                2147483647,
                                2147483648ULL,
                                4294967295ULL,
                                4294967296ULL,
                                1ULL << 62,
                                18446744073709551615ULL,
                                0.5,
                                1e-45,
                                1e38,
                                -0.0,
                                1e300,
                                true,
                                false,
                                nullptr,
                                "conv",
                                "depthwise",
                                "dense",
                                "add",
                                "max_pool",
                                "global_avg_pool",
                                "concat",
                                "quantize",
                                "relu",
                                "relu6",
                                "none",
                                json::array(),
                                json::object()};
  const unsigned pick = r.next(std::size(values) + 3);
  if (pick < std::size(values)) return values[pick];
  if (old.is_number_unsigned()) {
    const auto v = old.get<std::uint64_t>();
    return pick == std::size(values) ? v + 1 : pick == std::size(values) + 1 ? v - 1 : v * 2;
  }
  return old;
}

/// Applies one structural change at a random node of `header`.
void mutate(json& header, rng& r) {
  const json flat = header.flatten();  // "/steps/1/weights/out" -> 4, for every leaf
  if (flat.empty()) return;
  auto it = flat.begin();
  std::advance(it, r.next(static_cast<unsigned>(flat.size())));
  json::json_pointer leaf(it.key());
  const unsigned op = r.next(4);
  if (op <= 1 || leaf.empty()) {
    header[leaf] = interesting_value(r, it.value());
    return;
  }
  const std::string last = leaf.back();
  const json::json_pointer parent_ptr = leaf.parent_pointer();
  json& parent = header[parent_ptr];
  if (parent.is_object()) {
    if (op == 2)
      parent.erase(last);
    else
      parent[last] = parent;  // a level deeper: an object where a number was
  } else if (parent.is_array() && !parent.empty()) {
    const std::size_t i = r.next(static_cast<unsigned>(parent.size())),
                      j = r.next(static_cast<unsigned>(parent.size()));
    if (op == 2)
      parent.erase(i);
    else
      std::swap(parent[i], parent[j]);
  }
}

}  // namespace mutation

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned seed) {
  mutation::rng r{seed};
  if (size == 0 || data[0] != '{' || r.next(2) == 0) return LLVMFuzzerMutate(data, size, max_size);
  const std::uint8_t *begin = data, *end = data + size;
  const std::uint8_t* nul = std::find(begin, end, 0);
  nlohmann::json header = nlohmann::json::parse(begin, nul, nullptr, false);
  if (header.is_discarded()) return LLVMFuzzerMutate(data, size, max_size);
  const int changes = 1 + static_cast<int>(r.next(3));
  for (int i = 0; i < changes; ++i) mutation::mutate(header, r);
  std::string out = header.dump();
  out.push_back('\0');
  if (nul != end) out.append(nul + 1, end);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const unsigned char> bytes(data, size);
  load_and_check(bytes, true);
  load_and_check(bytes, false);
  if (size > 0 && data[0] == '{') load_and_check(wrap(bytes), false);
  return 0;
}
