#pragma once
// A minimal "--name value" command-line parser for the examples: typed lookups with
// defaults, --help, and an error for unknown or malformed options.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include "xquant/core/error.hpp"

namespace xquant::examples {

class args {
 public:
  args(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) {
      const std::string key = argv[i];
      if (key == "--help" || key == "-h") {
        std::printf("usage: %s\n", usage_.c_str());
        std::exit(0);
      }
      check(key.rfind("--", 0) == 0 && i + 1 < argc, "expected '--name value', got '", key, "'\nusage: ", usage_);
      values_[key.substr(2)] = argv[++i];
    }
  }

  template <class T>
  T get(const std::string& name, T fallback) {
    const auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    std::istringstream in(it->second);
    T v{};
    in >> v;
    check(!in.fail() && in.eof(), "option --", name, ": cannot parse '", it->second, "'");
    used_[name] = true;
    return v;
  }

  std::string get(const std::string& name, const std::string& fallback) {
    const auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    used_[name] = true;
    return it->second;
  }

  /// Throws for options that no get() asked for (typos).
  void finish() const {
    for (const auto& [name, value] : values_) {
      check(used_.count(name) != 0, "unknown option --", name, "\nusage: ", usage_);
    }
  }

 private:
  std::string usage_;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> used_;
};

}  // namespace xquant::examples
