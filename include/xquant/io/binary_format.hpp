#pragma once
// What xquant's binary file formats share (checkpoint.hpp, int8_model_file.hpp):
// little-endian integers in byte buffers and short JSON excerpts for error messages. Kept
// free of nn/ and xtensor, so a reader of int8 model files does not pull in the training side.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace xquant::io::le {

inline void put_u64(unsigned char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline void put_u32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline std::uint32_t get_u32(const unsigned char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace xquant::io::le

namespace xquant::io::detail {

/// A JSON value for an error message: scalars as JSON text (at most 60 characters),
/// arrays and objects by their type name.
inline std::string json_excerpt(const nlohmann::json& value) {
  if (value.is_structured()) return value.type_name();
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

}  // namespace xquant::io::detail
