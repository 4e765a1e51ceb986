#pragma once
// Error types and the one checking helper every module uses.
//
// xquant reports bad input by throwing: a wrong shape, a NaN, a scale of zero or a
// malformed file never reaches a kernel. Kernels themselves (kernels/) do not throw;
// their callers validate once, outside the hot loop.
//
// Built without exceptions (-fno-exceptions, e.g. firmware), a failed check cannot throw:
// it prints the same message to stderr and calls std::abort(). A firmware build therefore
// must not rely on catching errors - it validates its model on the host, where the same
// checks throw.

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

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

#if defined(__cpp_exceptions)

template <class E, class... Parts>
[[noreturn]] void throw_error(const Parts&... parts) {
  std::ostringstream message;
  message << "xquant: ";
  (message << ... << parts);
  throw E(message.str());
}

#else  // no exceptions: print the message and abort

// The parts go straight to stderr with stdio: a string stream would link the whole iostream
// and locale machinery (~600 KB in a static build) into firmware that never fails a check.
// Same text as operator<< for the types messages use (text, characters, numbers, enums;
// floats with %g, i.e. the stream's default 6 significant digits).
template <class T>
void print_part(const T& v) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    const std::string_view text(v);
    std::fwrite(text.data(), 1, text.size(), stderr);
  } else if constexpr (std::is_same_v<T, bool>) {
    std::fputs(v ? "1" : "0", stderr);
  } else if constexpr (std::is_same_v<T, char> || std::is_same_v<T, signed char> ||
                       std::is_same_v<T, unsigned char>) {
    std::fputc(static_cast<unsigned char>(v), stderr);
  } else if constexpr (std::is_enum_v<T>) {
    print_part(static_cast<long long>(v));
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    std::fprintf(stderr, "%lld", static_cast<long long>(v));
  } else if constexpr (std::is_integral_v<T>) {
    std::fprintf(stderr, "%llu", static_cast<unsigned long long>(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    std::fprintf(stderr, "%g", static_cast<double>(v));
  } else {
    std::fputs("(?)", stderr);
  }
}

template <class E, class... Parts>
[[noreturn]] void throw_error(const Parts&... parts) {
  std::fputs("xquant: ", stderr);
  (print_part(parts), ...);
  std::fputc('\n', stderr);
  std::abort();
}

#endif

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
