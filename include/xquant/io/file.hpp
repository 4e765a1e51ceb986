#pragma once
// Whole-file reads and atomic whole-file writes (POSIX).
//
// atomic_file writes so that a reader, or the next run after a crash or power loss,
// sees either the previous content of the target or the complete new content, never a
// mix or a truncated file:
//
//   1. create "<target>.tmp-<pid>-<n>" in the target's directory (O_CREAT | O_EXCL, mode
//      0666 minus the umask, like any new file), so the rename below stays within one
//      filesystem;
//   2. write the content;
//   3. fsync the temporary (the data is on disk before the name points at it), close;
//   4. rename it over the target: atomic on POSIX;
//   5. fsync the directory, so that the rename itself is durable (best effort: some
//      filesystems refuse to fsync a directory, and the new content is already in
//      place, so an error here is not reported).
//
// Any failure before the rename closes and removes the temporary and throws io_error
// naming the step and the system's reason; the target is untouched. Destroying an
// atomic_file that was not committed (an exception while producing the content)
// removes the temporary too.
//
// POSIX only (Linux, macOS, the BSDs): open/write/fsync/rename.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "xquant/core/error.hpp"

namespace xquant::io {

namespace detail {

[[noreturn]] inline void throw_system(const std::filesystem::path& path, const char* what, int err) {
  xquant::detail::throw_error<io_error>("cannot ", what, " '", path.string(), "': ",
                                        std::system_category().message(err));
}

inline unsigned next_temp_number() {
  static std::atomic<unsigned> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

class atomic_file {
 public:
  /// Creates the temporary next to `target`; throws io_error when it cannot (e.g. the
  /// directory does not exist or is not writable).
  explicit atomic_file(std::filesystem::path target) : target_(std::move(target)) {
    check<io_error>(!target_.empty() && target_.has_filename(), "cannot write to '", target_.string(),
                    "': not a file path");
    for (int attempt = 0;; ++attempt) {
      temp_ = target_;
      temp_ += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(detail::next_temp_number());
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) break;
      const int err = errno;
      if ((err == EEXIST || err == EINTR) && attempt < 100) continue;
      detail::throw_system(target_, "create a temporary file for", err);
    }
  }

  ~atomic_file() { abandon(); }

  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;

  /// Appends `size` bytes; throws io_error (and removes the temporary) on failure.
  void write(const void* data, std::size_t size) {
    check<io_error>(fd_ >= 0, "atomic_file '", target_.string(), "': write after commit or failure");
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ::ssize_t n = ::write(fd_, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write", errno);
      }
      if (n == 0) fail("write", EIO);
      p += n;
      size -= static_cast<std::size_t>(n);
    }
  }

  void write(std::string_view text) { write(text.data(), text.size()); }

  /// Appends `count` zero bytes.
  void write_zeros(std::size_t count) {
    static constexpr char zeros[256] = {};
    while (count > 0) {
      const std::size_t n = count < sizeof zeros ? count : sizeof zeros;
      write(zeros, n);
      count -= n;
    }
  }

  /// Makes the content durable and replaces the target with it (steps 3-5 above).
  void commit() {
    check<io_error>(fd_ >= 0, "atomic_file '", target_.string(), "': commit after commit or failure");
    if (::fsync(fd_) != 0) fail("flush", errno);
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail("close", errno);
    if (::rename(temp_.c_str(), target_.c_str()) != 0) fail("rename the temporary file over", errno);
    committed_ = true;
    sync_directory();
  }

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail(const char* what, int err) {
    abandon();
    detail::throw_system(target_, what, err);
  }

  void abandon() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!committed_ && !temp_.empty()) {
      ::unlink(temp_.c_str());
      temp_.clear();
    }
  }

  void sync_directory() const noexcept {
    std::filesystem::path dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::fsync(fd);
    ::close(fd);
  }

  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Replaces `path` with `content` atomically (see atomic_file).
inline void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  atomic_file file(path);
  file.write(content);
  file.commit();
}

/// The whole content of a regular file; throws io_error naming the path and the reason.
inline std::vector<unsigned char> read_file(const std::filesystem::path& path) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) detail::throw_system(path, "open", errno);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  struct ::stat st {};
  if (::fstat(fd, &st) != 0) detail::throw_system(path, "stat", errno);
  check<io_error>(S_ISREG(st.st_mode), "cannot read '", path.string(), "': not a regular file");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      detail::throw_system(path, "read", errno);
    }
    if (n == 0) break;  // the file shrank while we read it: return what is there
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace xquant::io
