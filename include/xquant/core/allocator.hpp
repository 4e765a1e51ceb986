#pragma once
// caching_allocator: the allocator behind xquant::array.
//
// Why: a training step allocates the same large activation and gradient buffers every
// iteration. With the system allocator each of them is a fresh mmap (glibc serves blocks
// above its mmap threshold that way) and every page is faulted in again on first touch;
// measured on the reference models, that doubled or tripled the time of a step. This
// allocator keeps freed blocks in size classes and hands them back on the next request of
// the same class, so a steady-state training loop makes no system allocations.
//
// - Small blocks (< 4 KiB) go straight to operator new: malloc's own free lists are fast.
// - Larger blocks are rounded up to a size class (4 classes per power of two, so at most
//   25 % slack) and aligned to 64 bytes (one cache line, one AVX-512 register).
// - The cache is process-wide and mutex-protected: a buffer may be freed on another
//   thread than the one that allocated it. Allocations per step are few (hundreds), so
//   the lock is not contended in practice.
// - At most cache_limit() bytes are kept (default 4 GiB); beyond it freed blocks go back
//   to the system. release_cached_memory() empties the cache.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace xquant {

namespace detail {

class block_cache {
 public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t small_limit = 4096;

  // Never destroyed: an array in some other static object may be freed during static
  // destruction, after a function-local cache would already be gone. The blocks stay
  // reachable through this pointer, so leak checkers do not report them.
  static block_cache& instance() {
    static block_cache* cache = new block_cache();
    return *cache;
  }

  /// The size class of n bytes: n rounded up to a quarter of its power of two.
  static std::size_t size_class(std::size_t n) {
    const std::size_t power = std::bit_floor(n);
    const std::size_t quarter = std::max<std::size_t>(power / 4, 1);
    return (n + quarter - 1) / quarter * quarter;
  }

  void* allocate(std::size_t bytes) {
    const std::size_t cls = size_class(bytes);
    {
      std::lock_guard lock(mutex_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= cls;
        return p;
      }
    }
    return ::operator new(cls, std::align_val_t{alignment});
  }

  void deallocate(void* p, std::size_t bytes) {
    const std::size_t cls = size_class(bytes);
    {
      std::lock_guard lock(mutex_);
      if (cached_bytes_ + cls <= limit_) {
        free_[cls].push_back(p);
        cached_bytes_ += cls;
        return;
      }
    }
    ::operator delete(p, std::align_val_t{alignment});
  }

  void release() {
    std::lock_guard lock(mutex_);
    for (auto& [cls, blocks] : free_) {
      for (void* p : blocks) ::operator delete(p, std::align_val_t{alignment});
    }
    free_.clear();
    cached_bytes_ = 0;
  }

  void set_limit(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    limit_ = bytes;
  }
  std::size_t limit() const { return limit_; }
  std::size_t cached_bytes() {
    std::lock_guard lock(mutex_);
    return cached_bytes_;
  }

 private:
  block_cache() = default;
  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_bytes_ = 0;
  std::size_t limit_ = std::size_t{4} << 30;
};

}  // namespace detail

template <class T>
struct caching_allocator {
  using value_type = T;

  caching_allocator() noexcept = default;
  template <class U>
  caching_allocator(const caching_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (bytes < detail::block_cache::small_limit) return static_cast<T*>(::operator new(bytes));
    return static_cast<T*>(detail::block_cache::instance().allocate(bytes));
  }

  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < detail::block_cache::small_limit) {
      ::operator delete(p);
    } else {
      detail::block_cache::instance().deallocate(p, bytes);
    }
  }

  template <class U>
  friend bool operator==(const caching_allocator&, const caching_allocator<U>&) noexcept {
    return true;
  }
};

/// Returns every cached block to the system.
inline void release_cached_memory() { detail::block_cache::instance().release(); }
/// Caps the bytes kept for reuse (0 disables caching).
inline void set_cache_limit(std::size_t bytes) { detail::block_cache::instance().set_limit(bytes); }
inline std::size_t cached_memory() { return detail::block_cache::instance().cached_bytes(); }

}  // namespace xquant
