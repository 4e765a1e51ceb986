#pragma once
// Error types and the one checking helper every module uses.
//
// xquant reports bad input by throwing: a wrong shape, a NaN, a scale of zero or a
// malformed file never reaches a kernel. Kernels themselves (kernels/) do not throw;
// their callers validate once, outside the hot loop.

#include <sstream>
#include <stdexcept>
#include <string>

namespace xquant {

/// Base of every error xquant throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor's shape or an axis does not fit the operation.
class shape_error : public error {
 public:
  using error::error;
};

/// NaN or Inf where a finite number is needed.
class numeric_error : public error {
 public:
  using error::error;
};

/// A parameter is out of its domain: a scale <= 0, a zero point outside the range,
/// an empty tensor where data is needed.
class value_error : public error {
 public:
  using error::error;
};

/// A file could not be read or written, or its content is malformed.
class io_error : public error {
 public:
  using error::error;
};

namespace detail {

template <class E, class... Parts>
[[noreturn]] void throw_error(const Parts&... parts) {
  std::ostringstream message;
  message << "xquant: ";
  (message << ... << parts);
  throw E(message.str());
}

}  // namespace detail

/// Throws E with the concatenated message parts when `ok` is false. The message is only
/// built on failure, so checks are cheap on the good path.
template <class E = value_error, class... Parts>
void check(bool ok, const Parts&... parts) {
  if (!ok) [[unlikely]] {
    detail::throw_error<E>(parts...);
  }
}

}  // namespace xquant
