// Writes the seed corpus of fuzz_int8_model_file into the directory argv[1] (created,
// emptied first): valid int8 model files of the hand-built test graph
// (tests/xquant/runtime/int8_graph_test_util.hpp), with and without metadata, and a
// smaller graph (its tail cut off at the global average pool), and the small graph in the
// "<JSON header> NUL <data section>" form (see fuzz_int8_model_file.cpp).

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "../xquant/runtime/int8_graph_test_util.hpp"
#include "xquant/io/int8_model_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const xquant::runtime::graph g = int8_graph_test::small_graph();
    xquant::io::save_int8_model(dir / "small.xqint8", g);
    xquant::io::save_int8_model(dir / "small_metadata.xqint8", g, {{"model", "small"}, {"epoch", 3}});

    xquant::runtime::graph head = g;  // quantize ... global average pool: 8 steps, output v7
    head.steps.resize(8);
    head.step_names.resize(8);
    head.values.resize(9);  // keep the view v8 of v6
    head.output = 7;
    xquant::io::save_int8_model(dir / "head.xqint8", head);

    // The "<JSON header> NUL <data section>" form the fuzz target also reads.
    const std::vector<unsigned char> file = xquant::io::encode_int8_model(g);
    const auto header_size = static_cast<std::size_t>(xquant::io::le::get_u64(file.data() + 8));
    std::string split(file.begin() + 24, file.begin() + 24 + static_cast<std::ptrdiff_t>(header_size));
    split.erase(split.find_last_not_of(' ') + 1);
    split.push_back('\0');
    split.append(file.begin() + 24 + static_cast<std::ptrdiff_t>(header_size), file.end());
    xquant::io::write_file_atomically(dir / "small.split", split);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
