#pragma once
// A converted int8 model as a self-contained C++ header, for builds without a file system or
// a JSON parser (firmware):
//
//   io::export_cpp_header("cnn_model.hpp", graph, "cnn");
//   // firmware:  #include "cnn_model.hpp"
//   //            xquant::runtime::int8_model model(cnn::make_graph());
//
// The header defines, in namespace <name>: the input extents and output size as constants,
// every weighted step's int8 weights, int32 biases and requantization arrays (float scale,
// Q31 multiplier, shift) as constexpr arrays, and make_graph(), which rebuilds exactly the
// runtime::graph that was exported. Floats are written as hex-float literals, which are exact,
// so the rebuilt graph is bit-identical and the firmware computes the same bits as the host.
// make_graph() copies the arrays into the graph's vectors (the runtime owns its graph), so the
// constexpr arrays stay in read-only memory and are read once.
//
// The generated code compiles warning-free with -Wall -Wextra -Wpedantic and builds with
// -fno-exceptions -fno-rtti. Writing is atomic (io/file.hpp): a reader sees the previous
// header or the complete new one.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/io/file.hpp"
#include "xquant/runtime/graph.hpp"

// GCC 12 reports -Wrestrict false positives (GCC bug 105329) in std::string's inlined
// memcpy wherever strings are concatenated with operator+ at -O3; this file builds C++ source
// text that way throughout, so the warning is silenced here and nowhere else.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

namespace xquant::io {

/// Helpers that write C++ source text (also used by tools that embed test data).
namespace cpp {

/// A float as an exact hex-float literal, e.g. 0.1f -> "0x1.99999ap-4f". Locale-independent.
inline std::string float_literal(float v) {
  check<value_error>(std::isfinite(v), "cannot write ", v, " as a C++ float literal");
  char digits[32];
  const float magnitude = std::fabs(v);
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, magnitude, std::chars_format::hex);
  check<value_error>(ec == std::errc(), "cannot format the float ", v);
  return (std::signbit(v) ? "-0x" : "0x") + std::string(digits, end) + "f";
}

/// An integer literal; INT64_MIN-style values are written as an expression (a literal is
/// never negative in C++: "-2147483648" would be the negation of a long).
inline std::string int_literal(std::int64_t v) {
  if (v == INT32_MIN) return "(-2147483647 - 1)";
  check<value_error>(v >= INT32_MIN && v <= UINT32_MAX, "integer ", v, " does not fit the generated arrays");
  return std::to_string(v);
}

/// A C++ string literal of `text`: printable ASCII kept, the rest as 3-digit octal escapes
/// (never hex: a hex escape would swallow a following hex digit).
inline std::string string_literal(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      const char escape[] = {'\\', static_cast<char>('0' + (c >> 6)), static_cast<char>('0' + ((c >> 3) & 7)),
                             static_cast<char>('0' + (c & 7))};
      out.append(escape, sizeof escape);
    }
  }
  return out + "\"";
}

/// True for a name usable as a namespace: an identifier that is not a keyword and not
/// reserved to the implementation (leading underscore, double underscore).
inline bool is_namespace_name(std::string_view name) {
  static constexpr std::string_view keywords[] = {
      "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
      "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept", "const", "consteval", "constexpr",
      "constinit", "const_cast", "continue", "co_await", "co_return", "co_yield", "decltype", "default", "delete",
      "do", "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for",
      "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
      "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast",
      "requires", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast", "struct",
      "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid", "typename",
      "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq", "std",
      "xquant"};
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (name.empty() || !letter(name[0]) || name[0] == '_' || name.find("__") != std::string_view::npos) return false;
  for (const char c : name)
    if (!letter(c) && !digit(c)) return false;
  for (const std::string_view k : keywords)
    if (name == k) return false;
  return true;
}

/// Appends "inline constexpr <type> <name>[<n>] = {...};" with `per_line` values a line.
/// T: an integer type or float.
template <class T>
void append_array(std::string& out, std::string_view type, std::string_view name, std::span<const T> values,
                  std::size_t per_line) {
  check<value_error>(!values.empty(), "C++ array '", name, "' would be empty");
  out.append("inline constexpr ").append(type).append(" ").append(name);
  out.append("[").append(std::to_string(values.size())).append("] = {");
  for (std::size_t i = 0; i < values.size(); ++i) {
    out.append(i % per_line == 0 ? "\n    " : " ");
    if constexpr (std::is_floating_point_v<T>) {
      out.append(float_literal(values[i]));
    } else {
      out.append(int_literal(static_cast<std::int64_t>(values[i])));
    }
    out.append(",");
  }
  out.append("\n};\n");
}

}  // namespace cpp

namespace detail {

inline std::string grid_code(const runtime::activation_grid& g) {
  return "detail::grid(" + cpp::float_literal(g.scale) + ", " + std::to_string(g.zero_point) + ", " +
         std::to_string(g.qmin) + ", " + std::to_string(g.qmax) + ")";
}

inline std::string activation_code(runtime::activation a) {
  switch (a) {
    case runtime::activation::relu: return "xquant::runtime::activation::relu";
    case runtime::activation::relu6: return "xquant::runtime::activation::relu6";
    case runtime::activation::none: break;
  }
  return "xquant::runtime::activation::none";
}

inline std::string extents(const runtime::value_info& v) {
  return v.flat ? std::to_string(v.c) : std::to_string(v.h) + "x" + std::to_string(v.w) + "x" + std::to_string(v.c);
}

/// Writes one step of make_graph() (and its arrays into `data`).
class step_writer {
 public:
  step_writer(const runtime::graph& g, std::string& data, std::string& code) : g_(g), data_(data), code_(code) {}

  void write(std::size_t index) {
    index_ = index;
    std::visit([&](const auto& st) { write_step(st); }, g_.steps[index]);
  }

  /// The plan's column titles.
  static std::string plan_titles() { return row("operation", "values (per image)"); }
  /// One line of the plan in the header's leading comment.
  std::string plan_line(std::size_t index) const {
    return std::visit([&](const auto& st) { return describe(st); }, g_.steps[index]);
  }

 private:
  void open(std::string_view type) { code_.append("  {\n    xquant::runtime::").append(type).append(" s;\n"); }
  void field(std::string_view name, const std::string& value) {
    code_.append("    s.").append(name).append(" = ").append(value).append(";\n");
  }
  void field(std::string_view name, std::size_t value) { field(name, std::to_string(value)); }
  void close() {
    code_.append("    g.steps.emplace_back(std::move(s));\n    g.step_names.emplace_back(")
        .append(cpp::string_literal(g_.step_names[index_]))
        .append(");\n  }\n");
  }

  void weights(const runtime::lowered_weighted& w) {
    const auto& rq = w.requant;
    check<value_error>(w.out > 0 && w.weight.size() == w.out * w.depth && w.bias.size() == w.out &&
                           rq.scale.size() == w.out && rq.fixed.multiplier.size() == w.out &&
                           rq.fixed.shift.size() == w.out,
                       "export_cpp_header: step ", index_, " ('", g_.step_names[index_],
                       "') has inconsistent weight, bias or requantization sizes");
    const std::string p = "s" + std::to_string(index_) + "_";
    data_.append("\n// step ").append(std::to_string(index_)).append(": ").append(std::to_string(w.out));
    data_.append(" outputs x ").append(std::to_string(w.depth)).append(" inputs\n");
    cpp::append_array<std::int8_t>(data_, "std::int8_t", p + "weight", w.weight, 24);
    cpp::append_array<std::int32_t>(data_, "std::int32_t", p + "bias", w.bias, 8);
    cpp::append_array<float>(data_, "float", p + "scale", rq.scale, 4);
    cpp::append_array<std::int32_t>(data_, "std::int32_t", p + "multiplier", rq.fixed.multiplier, 8);
    cpp::append_array<std::int32_t>(data_, "std::int32_t", p + "shift", rq.fixed.shift, 16);
    field("w", "detail::weighted(data::" + p + "weight, data::" + p + "bias, data::" + p + "scale, data::" + p +
                   "multiplier, data::" + p + "shift, " + std::to_string(rq.zero_point) + ", " +
                   std::to_string(rq.qmin) + ", " + std::to_string(rq.qmax) + ")");
  }

  void write_step(const runtime::quantize_step& st) {
    open("quantize_step");
    field("out", st.out);
    close();
  }
  void write_step(const runtime::conv_step& st) {
    open("conv_step");
    field("in", st.in);
    field("out", st.out);
    field("kernel", st.kernel);
    field("stride", st.stride);
    field("padding", st.padding);
    weights(st.w);
    close();
  }
  void write_step(const runtime::depthwise_step& st) {
    open("depthwise_step");
    field("in", st.in);
    field("out", st.out);
    field("stride", st.stride);
    weights(st.w);
    close();
  }
  void write_step(const runtime::dense_step& st) {
    open("dense_step");
    field("in", st.in);
    field("out", st.out);
    weights(st.w);
    close();
  }
  void write_step(const runtime::add_step& st) {
    open("add_step");
    field("a", st.a);
    field("b", st.b);
    field("out", st.out);
    field("act", activation_code(st.act));
    close();
  }
  void write_step(const runtime::max_pool_step& st) {
    open("max_pool_step");
    field("in", st.in);
    field("out", st.out);
    close();
  }
  void write_step(const runtime::global_avg_pool_step& st) {
    open("global_avg_pool_step");
    field("in", st.in);
    field("out", st.out);
    close();
  }
  void write_step(const runtime::concat_step& st) {
    open("concat_step");
    field("inputs", concat(std::string("{"), value_list(st.inputs, ", ", ""), std::string("}")));
    field("out", st.out);
    close();
  }
  /// "3, 5, 8" (separator ", ", prefix "") or "v3 + v5" and the like.
  static std::string value_list(const std::vector<std::size_t>& values, const char* separator, const char* prefix) {
    std::string s;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i > 0) s.append(separator);
      s.append(prefix).append(num(values[i]));
    }
    return s;
  }

  // A line of the plan: "operation" and "inputs -> output extents", padded into columns.
  static std::string row(std::string op, std::string io) {
    op.resize(std::max<std::size_t>(op.size(), 18), ' ');
    io.resize(std::max<std::size_t>(io.size(), 26), ' ');
    return op + "  " + io;
  }
  // Strings are built with append(): GCC 12 reports -Wrestrict false positives for chains
  // of operator+ on string literals at -O3.
  template <class... Parts>
  static std::string concat(const Parts&... parts) {
    std::string s;
    (s.append(parts), ...);
    return s;
  }
  static std::string num(std::size_t v) { return std::to_string(v); }
  std::string io(const std::string& in, std::size_t out) const {
    return concat(in, std::string(" -> v"), num(out), std::string(" "), extents(g_.values.at(out)));
  }
  std::string io(std::size_t in, std::size_t out) const { return io(concat(std::string("v"), num(in)), out); }
  std::string describe(const runtime::quantize_step& st) const { return row("quantize", io("input", st.out)); }
  std::string describe(const runtime::conv_step& st) const {
    const std::string k = num(st.kernel);
    return row(concat(std::string("conv "), k, std::string("x"), k, std::string(" s"), num(st.stride),
                      std::string(" p"), num(st.padding)),
               io(st.in, st.out));
  }
  std::string describe(const runtime::depthwise_step& st) const {
    return row(concat(std::string("depthwise 3x3 s"), num(st.stride)), io(st.in, st.out));
  }
  std::string describe(const runtime::dense_step& st) const { return row("dense", io(st.in, st.out)); }
  std::string describe(const runtime::add_step& st) const {
    return row("add", io(concat(std::string("v"), num(st.a), std::string(" + v"), num(st.b)), st.out));
  }
  std::string describe(const runtime::max_pool_step& st) const { return row("max pool 2x2", io(st.in, st.out)); }
  std::string describe(const runtime::global_avg_pool_step& st) const {
    return row("global avg pool", io(st.in, st.out));
  }
  std::string describe(const runtime::concat_step& st) const {
    return row("concat", io(value_list(st.inputs, " | ", "v"), st.out));
  }

  const runtime::graph& g_;
  std::string& data_;
  std::string& code_;
  std::size_t index_ = 0;
};

/// The fixed part of every generated header: small builders that make_graph() calls.
inline constexpr std::string_view generated_helpers = R"(namespace detail {

inline xquant::runtime::activation_grid grid(float scale, std::int32_t zero_point, std::int32_t qmin,
                                             std::int32_t qmax) {
  xquant::runtime::activation_grid g;
  g.scale = scale;
  g.zero_point = zero_point;
  g.qmin = qmin;
  g.qmax = qmax;
  return g;
}

inline xquant::runtime::value_info value(std::size_t h, std::size_t w, std::size_t c, bool flat, std::size_t flat_c,
                                         xquant::runtime::activation_grid grid, std::size_t storage_of) {
  xquant::runtime::value_info v;
  v.h = h;
  v.w = w;
  v.c = c;
  v.flat = flat;
  v.flat_c = flat_c;
  v.grid = grid;
  v.storage_of = storage_of;
  return v;
}

template <class T, std::size_t N>
std::vector<T> to_vector(const T (&a)[N]) {
  return std::vector<T>(a, a + N);
}

// The requantization arrays are the exported ones (not recomputed from the scales), so the
// rebuilt layer is the exported one bit for bit.
template <std::size_t Weights, std::size_t Out>
xquant::runtime::lowered_weighted weighted(const std::int8_t (&weight)[Weights], const std::int32_t (&bias)[Out],
                                           const float (&scale)[Out], const std::int32_t (&multiplier)[Out],
                                           const std::int32_t (&shift)[Out], std::int32_t zero_point,
                                           std::int32_t qmin, std::int32_t qmax) {
  static_assert(Weights % Out == 0, "weights are [out][depth]");
  xquant::runtime::lowered_weighted w;
  w.out = Out;
  w.depth = Weights / Out;
  w.weight = to_vector(weight);
  w.bias = to_vector(bias);
  w.requant.scale = to_vector(scale);
  w.requant.fixed.multiplier = to_vector(multiplier);
  w.requant.fixed.shift = to_vector(shift);
  w.requant.zero_point = zero_point;
  w.requant.qmin = qmin;
  w.requant.qmax = qmax;
  return w;
}

}  // namespace detail
)";

inline void check_exportable(const runtime::graph& g, const std::string& name) {
  check<value_error>(cpp::is_namespace_name(name), "export_cpp_header: '", name,
                     "' cannot name a C++ namespace (an identifier, not a keyword, no leading or double underscore)");
  check<value_error>(!g.steps.empty() && g.step_names.size() == g.steps.size(),
                     "export_cpp_header: the graph has no steps or a name count that differs from its step count");
  check<value_error>(g.output < g.values.size(), "export_cpp_header: the graph's output value ", g.output,
                     " does not exist");
}

inline std::string value_code(const runtime::value_info& v) {
  const std::string storage =
      v.storage_of == runtime::value_info::npos ? "xquant::runtime::value_info::npos" : std::to_string(v.storage_of);
  return "  g.values.push_back(detail::value(" + std::to_string(v.h) + ", " + std::to_string(v.w) + ", " +
         std::to_string(v.c) + ", " + (v.flat ? "true" : "false") + ", " + std::to_string(v.flat_c) + ", " +
         grid_code(v.grid) + ", " + storage + "));\n";
}

}  // namespace detail

/// The text of the header export_cpp_header writes (see the top of this file).
inline std::string cpp_header_text(const runtime::graph& g, const std::string& name) {
  detail::check_exportable(g, name);
  std::string data, code;
  detail::step_writer steps(g, data, code);
  std::string plan = "//   #  " + detail::step_writer::plan_titles() + "  layer\n";
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    steps.write(i);
    std::string index = std::to_string(i);
    index.insert(0, index.size() < 3 ? 3 - index.size() : 0, ' ');
    plan += "// " + index + "  " + steps.plan_line(i) + "  " + cpp::string_literal(g.step_names[i]) + "\n";
  }
  for (std::size_t v = 0; v < g.values.size(); ++v) {
    if (g.values[v].storage_of == runtime::value_info::npos) continue;
    plan += "//      v" + std::to_string(v) + " = v" + std::to_string(g.values[v].storage_of) + " flattened (" +
            std::to_string(g.values[v].c) + "): no step, same bytes\n";
  }
  const std::size_t outputs = g.values[g.output].c;

  std::string h;
  h += "// Generated by xquant::io::export_cpp_header: the int8 model '" + name + "'. Do not edit; regenerate.\n";
  h += "//\n// Input: " + std::to_string(g.input_c) + "x" + std::to_string(g.input_h) + "x" +
       std::to_string(g.input_w) + " floats per image (NCHW); output: " + std::to_string(outputs) +
       " floats (v" + std::to_string(g.output) + ", dequantized).\n//\n" + plan;
  h += "//\n// Use: xquant::runtime::int8_model model(" + name + "::make_graph());  model.run(input, 1, logits);\n";
  h += "#pragma once\n\n#include <cstddef>\n#include <cstdint>\n#include <utility>\n#include <vector>\n\n";
  h += "#include \"xquant/runtime/int8_model.hpp\"\n\nnamespace " + name + " {\n\n";
  h += "inline constexpr std::size_t input_channels = " + std::to_string(g.input_c) + ";\n";
  h += "inline constexpr std::size_t input_height = " + std::to_string(g.input_h) + ";\n";
  h += "inline constexpr std::size_t input_width = " + std::to_string(g.input_w) + ";\n";
  h += "inline constexpr std::size_t output_size = " + std::to_string(outputs) + ";\n\n";
  h += "namespace data {\n" + data + "\n}  // namespace data\n\n";
  h += detail::generated_helpers;
  h += "\n/// The exported graph, rebuilt (allocates its vectors; call once).\ninline xquant::runtime::graph "
       "make_graph() {\n  xquant::runtime::graph g;\n";
  h += "  g.input_c = " + std::to_string(g.input_c) + ";\n  g.input_h = " + std::to_string(g.input_h) +
       ";\n  g.input_w = " + std::to_string(g.input_w) + ";\n  g.output = " + std::to_string(g.output) + ";\n";
  h += "  g.values.reserve(" + std::to_string(g.values.size()) + ");\n";
  for (const runtime::value_info& v : g.values) h += detail::value_code(v);
  h += "  g.steps.reserve(" + std::to_string(g.steps.size()) + ");\n  g.step_names.reserve(" +
       std::to_string(g.steps.size()) + ");\n";
  h += code + "  return g;\n}\n\n}  // namespace " + name + "\n";
  return h;
}

/// Writes the model `g` as a C++ header at `path` (atomically), in namespace `name`.
/// Throws value_error for a name that cannot be a namespace or an inconsistent graph, and
/// io_error when the file cannot be written.
inline void export_cpp_header(const std::filesystem::path& path, const runtime::graph& g, const std::string& name) {
  write_file_atomically(path, cpp_header_text(g, name));
}

}  // namespace xquant::io

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic pop
#endif
