#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "xquant/core/parallel.hpp"
#include "xquant/kernels/gemm.hpp"
#include "xquant/kernels/reference/gemm.hpp"
#include "xquant/kernels/simd.hpp"
#include "tested_archs.hpp"

using namespace xquant;
using namespace xquant::kernels;

namespace {

// The awkward sizes of ruy's tests: around 1-10 and on both sides of 16, 32, 64 (multiples
// of the tile widths of every arch).
const std::vector<std::size_t> awkward = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 63, 64, 65};

/// One product: A, B, C with leading dimensions wider than the matrices (C's gaps and the
/// element after C hold a sentinel that must survive), op flags, alpha and beta. All sizes
/// are >= 1.
template <class T>
struct product {
  bool ta, tb;
  std::size_t m, n, k, lda, ldb, ldc;
  T alpha, beta;
  std::vector<T> a, b, c;

  product(bool ta_, bool tb_, std::size_t m_, std::size_t n_, std::size_t k_, T alpha_, T beta_, std::size_t pad,
          unsigned seed)
      : ta(ta_), tb(tb_), m(m_), n(n_), k(k_), alpha(alpha_), beta(beta_) {
    lda = (ta ? m : k) + pad;
    ldb = (tb ? k : n) + pad;
    ldc = n + pad;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<T> u(-1, 1);
    // A and B end right after their last element, so ASan sees any read past them.
    a.resize(((ta ? k : m) - 1) * lda + (ta ? m : k));
    b.resize(((tb ? n : k) - 1) * ldb + (tb ? k : n));
    c.resize(m * ldc + 1);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    for (auto& x : c) x = beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : u(rng);
    for (std::size_t i = 0; i < m; ++i)  // sentinels in C's row gaps and after its end
      for (std::size_t j = n; j < ldc; ++j) c[i * ldc + j] = T(12345);
    c.back() = T(12345);
  }

  template <class Arch>
  std::vector<T> run() const {
    std::vector<T> out = c;
    gemm<Arch>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, out.data(), ldc);
    return out;
  }

  /// The reference computed in double from the same inputs.
  std::vector<double> expected() const {
    std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end()), cd(c.begin(), c.end());
    reference::gemm<double>(ta, tb, m, n, k, alpha, ad.data(), lda, bd.data(), ldb, beta, cd.data(), ldc);
    return cd;
  }

  std::string name() const {
    return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + (ta ? " At" : " A") +
           (tb ? " Bt" : " B") + " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) + " ld+" +
           std::to_string(ldc - n);
  }
};

/// Error bound per element: |c - ref| <= eps_k * (k |alpha| + |beta| |c0| + 1) with inputs
/// in [-1, 1] (max|a| = max|b| = 1); eps_k = 1e-5 (float) or 1e-14 (double) per k step.
template <class T>
bool within_tolerance(const product<T>& p, const std::vector<T>& got, const std::vector<double>& want,
                      std::string& where) {
  const double eps = std::is_same_v<T, float> ? 1e-5 : 1e-14;
  for (std::size_t i = 0; i < p.m; ++i) {
    for (std::size_t j = 0; j < p.ldc; ++j) {
      const std::size_t at = i * p.ldc + j;
      const bool inside = j < p.n;
      const double c0 = p.beta == T(0) ? 0.0 : std::abs(double(p.c[at]));
      const double tol = eps * (double(p.k) * std::abs(double(p.alpha)) + std::abs(double(p.beta)) * c0 + 1);
      const bool ok = inside ? std::abs(double(got[at]) - want[at]) <= tol : got[at] == T(12345);
      if (!ok) {
        where = p.name() + " at (" + std::to_string(i) + ", " + std::to_string(j) +
                "): " + std::to_string(double(got[at])) + " vs " + std::to_string(want[at]);
        return false;
      }
    }
  }
  if (got.back() != T(12345)) {
    where = p.name() + ": wrote past the end of C";
    return false;
  }
  return true;
}

/// Runs p on every available arch against one reference result.
template <class T>
void check_all_archs(const product<T>& p) {
  const std::vector<double> want = p.expected();
  xquant_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::string where;
    const bool ok = within_tolerance(p, p.template run<Arch>(), want, where);
    CHECK_MESSAGE(ok, Arch::name() << " " << where);
  });
}

template <class T>
void awkward_sizes() {
  const std::size_t s = awkward.size();
  unsigned seed = 1;
  for (std::size_t i = 0; i < s; ++i) {
    for (std::size_t j = 0; j < s; ++j) {
      // Every (m, n) pair, with k and the op flags cycling so that each k and each
      // transpose combination meets many (m, n) pairs.
      const std::size_t k = awkward[(i + 3 * j) % s];
      const unsigned ops = static_cast<unsigned>(i + j) % 4;
      const T beta = (i + 2 * j) % 3 == 0 ? T(0) : T(0.75);
      check_all_archs(product<T>(ops & 1, ops & 2, awkward[i], awkward[j], k, T(1), beta, (i * j) % 3, seed++));
    }
  }
}

}  // namespace

TEST_CASE("gemm: awkward sizes, every transpose, every arch (float)") { awkward_sizes<float>(); }
TEST_CASE("gemm: awkward sizes, every transpose, every arch (double)") { awkward_sizes<double>(); }

TEST_CASE_TEMPLATE("gemm: larger products, alpha and beta, padded leading dimensions", T, float, double) {
  struct shape {
    std::size_t m, n, k;
  };
  // k = 600: several k blocks on every arch. Double runs smaller products through the same
  // code paths (the sanitizer build runs this for every arch; keep it quick).
  constexpr bool single = std::is_same_v<T, float>;
  const shape shapes[] = {
      {single ? 67u : 32u, single ? 200u : 80u, 77}, {single ? 32u : 16u, 33, 600}, {9, single ? 150u : 64u, 288}};
  const T alphas[] = {T(1), T(-0.5), T(2)};
  const T betas[] = {T(0), T(1), T(-1.5)};
  unsigned seed = 100;
  for (const shape& s : shapes) {
    for (unsigned ops = 0; ops < 4; ++ops) {
      const T alpha = alphas[ops % 3], beta = betas[(ops + seed) % 3];
      check_all_archs(product<T>(ops & 1, ops & 2, s.m, s.n, s.k, alpha, beta, 5, seed++));
    }
  }
  // One larger product per transpose combination on the default arch only.
  for (unsigned ops = 0; ops < 4; ++ops) {
    const product<T> p(ops & 1, ops & 2, 128, 300, 77, T(-0.5), ops % 2 ? T(0) : T(0.25), 3, seed++);
    std::string where;
    const bool ok = within_tolerance(p, p.template run<simd::default_arch>(), p.expected(), where);
    CHECK_MESSAGE(ok, where);
  }
}

TEST_CASE_TEMPLATE("gemm: small cache blocks (several mc, kc, nc blocks per product)", T, float, double) {
  // The default blocks exceed these products: force blocks of a few tiles, so that every
  // loop of the driver runs several times and ends on a partial block.
  xquant_test::for_each_runnable_arch([](auto arch) {
    using Arch = decltype(arch);
    using t = gemm_detail::tile<T, Arch>;
    const gemm_detail::blocking bl{2 * t::mr, 7, 2 * t::nr};
    unsigned seed = 300;
    for (unsigned ops = 0; ops < 4; ++ops) {
      const product<T> p(ops & 1, ops & 2, 5 * t::mr + 3, 5 * t::nr + 1, 45, T(0.75), ops % 2 ? T(0) : T(2), 2, seed++);
      std::vector<T> got = p.c;
      const auto g = gemm_detail::make_problem(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb,
                                               p.beta, got.data(), p.ldc);
      gemm_detail::run_blocks<Arch>(g, bl, {0, p.m}, {0, p.n});
      std::string where;
      const bool ok = within_tolerance(p, got, p.expected(), where);
      CHECK_MESSAGE(ok, Arch::name() << " " << where);
    }
  });
}

TEST_CASE_TEMPLATE("gemm: beta = 0 does not read C, even NaN", T, float, double) {
  product<T> p(false, false, 17, 33, 40, T(1), T(0), 2, 7);  // C is NaN-filled
  const std::vector<T> got = p.template run<simd::default_arch>();
  for (std::size_t i = 0; i < p.m; ++i)
    for (std::size_t j = 0; j < p.n; ++j) CHECK_FALSE(std::isnan(got[i * p.ldc + j]));
  std::string where;
  CHECK_MESSAGE(within_tolerance(p, got, p.expected(), where), where);
}

TEST_CASE_TEMPLATE("gemm: empty products", T, float, double) {
  // k == 0: C = beta * C (alpha * empty sum); m or n == 0: nothing is touched.
  std::vector<T> c = {T(2), T(4), T(6), T(8)};
  const T dummy = T(0);
  gemm<T>(false, false, 2, 2, 0, T(3), &dummy, 1, &dummy, 2, T(0.5), c.data(), 2);
  CHECK(c == std::vector<T>{T(1), T(2), T(3), T(4)});
  gemm<T>(false, false, 2, 2, 0, T(3), &dummy, 1, &dummy, 2, T(0), c.data(), 2);
  CHECK(c == std::vector<T>{T(0), T(0), T(0), T(0)});
  c.assign(4, T(7));
  gemm<T>(false, false, 0, 2, 3, T(1), &dummy, 3, &dummy, 2, T(0), c.data(), 2);
  gemm<T>(false, false, 2, 0, 3, T(1), &dummy, 3, &dummy, 0, T(0), c.data(), 2);
  CHECK(c == std::vector<T>(4, T(7)));
}

TEST_CASE_TEMPLATE("gemm: the entry point is the default-arch kernel (reference loop when tiny)", T, float, double) {
  product<T> p(true, false, 33, 65, 31, T(1.5), T(-1), 1, 3);
  std::vector<T> entry = p.c;
  gemm<T>(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta, entry.data(), p.ldc);
  CHECK(entry == p.template run<simd::default_arch>());

  // Tiny products take the reference loop: the same bits.
  product<T> q(false, true, 2, 3, 4, T(1.5), T(-1), 1, 4);
  std::vector<T> tiny = q.c, ref = q.c;
  gemm<T>(q.ta, q.tb, q.m, q.n, q.k, q.alpha, q.a.data(), q.lda, q.b.data(), q.ldb, q.beta, tiny.data(), q.ldc);
  reference::gemm<T>(q.ta, q.tb, q.m, q.n, q.k, q.alpha, q.a.data(), q.lda, q.b.data(), q.ldb, q.beta, ref.data(),
                     q.ldc);
  CHECK(tiny == ref);
}

namespace {

template <class T>
void thread_invariance(thread_pool& two) {
  // Column split (wide C) and row split (tall C), every transpose, a ragged edge, several
  // k blocks, split on a private 2-thread pool whatever the size (the entry point splits
  // only above gemm_detail::parallel_threshold); the entry point runs with
  // set_num_threads(2).
  struct shape {
    std::size_t m, n, k;
  };
  const shape shapes[] = {{13, 150, 530}, {100, 21, 70}};
  for (const shape& s : shapes) {
    for (unsigned ops = 0; ops < 4; ++ops) {
      const product<T> p(ops & 1, ops & 2, s.m, s.n, s.k, T(0.5), ops % 2 ? T(0) : T(1), 3, 40 + ops);
      auto run = [&](thread_pool* pool) {
        std::vector<T> out = p.c;
        gemm_detail::run<simd::default_arch>(
            gemm_detail::make_problem(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta,
                                      out.data(), p.ldc),
            pool);
        return out;
      };
      const std::vector<T> one = run(nullptr), split = run(&two);
      std::vector<T> entry = p.c;
      gemm<T>(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta, entry.data(), p.ldc);
      CHECK_MESSAGE(std::memcmp(one.data(), split.data(), one.size() * sizeof(T)) == 0, p.name());
      CHECK_MESSAGE(std::memcmp(one.data(), entry.data(), one.size() * sizeof(T)) == 0, p.name());
    }
  }
}

}  // namespace

TEST_CASE("gemm: bitwise the same on 1 and 2 threads") {
  thread_pool two(2);
  struct restore {
    ~restore() { set_num_threads(1); }
  } guard;
  set_num_threads(2);
  thread_invariance<float>(two);
  thread_invariance<double>(two);
}

TEST_CASE_TEMPLATE("gemm: the entry point splits large products over the shared pool, same bits", T, float, double) {
  // Above gemm_detail::parallel_threshold: the entry point splits when num_threads() > 1,
  // and stays serial inside a chunk of the pool (nested).
  const product<T> p(false, true, 48, 256, 180, T(1), T(0.5), 1, 77);
  REQUIRE(p.m * p.n * p.k >= gemm_detail::parallel_threshold);
  auto entry = [&] {
    std::vector<T> out = p.c;
    gemm<T>(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta, out.data(), p.ldc);
    return out;
  };
  const std::vector<T> one = entry();
  struct restore {
    ~restore() { set_num_threads(1); }
  } guard;
  set_num_threads(2);
  CHECK(gemm_detail::pool_usable(default_pool()));
  const std::vector<T> two = entry();
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(T)) == 0);
  std::vector<T> nested[2];
  parallel_for(2, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      CHECK_FALSE(gemm_detail::pool_usable(default_pool()));  // doctest asserts are thread-safe
      nested[i] = entry();
    }
  });
  CHECK(std::memcmp(one.data(), nested[0].data(), one.size() * sizeof(T)) == 0);
  CHECK(std::memcmp(one.data(), nested[1].data(), one.size() * sizeof(T)) == 0);
}

namespace {

/// B given by row offsets into a shared source (overlapping windows in shuffled order, as
/// implicit im2col has them), and the same B materialised as a plain matrix.
template <class T>
struct indexed_b {
  std::vector<T> source, dense;
  std::vector<std::size_t> rows;
  std::size_t row_len;

  indexed_b(std::size_t row_count, std::size_t len, unsigned seed) : row_len(len) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<T> u(-1, 1);
    const std::size_t step = len / 3 + 1;  // consecutive windows overlap
    source.resize(row_count * step + len);
    for (auto& x : source) x = u(rng);
    for (std::size_t i = 0; i < row_count; ++i) rows.push_back(i * step);
    std::shuffle(rows.begin(), rows.end(), rng);
    for (std::size_t r : rows) dense.insert(dense.end(), source.begin() + r, source.begin() + r + len);
  }
};

}  // namespace

TEST_CASE_TEMPLATE("gemm_indexed: the same bits as gemm on the materialised B, every arch", T, float, double) {
  struct shape {
    std::size_t m, n, k;
  };
  const shape shapes[] = {{1, 1, 1}, {3, 5, 7}, {16, 840, 9}, {17, 33, 65}, {8, 100, 300}, {70, 31, 20}, {33, 64, 5}};
  unsigned seed = 500;
  for (const shape& s : shapes) {
    for (bool trans_b : {false, true}) {
      const indexed_b<T> b(trans_b ? s.n : s.k, trans_b ? s.k : s.n, seed++);
      const product<T> p(seed % 2 == 0, trans_b, s.m, s.n, s.k, T(0.75), seed % 3 == 0 ? T(0) : T(0.5), 2, seed);
      xquant_test::for_each_runnable_arch([&](auto arch) {
        using Arch = decltype(arch);
        std::vector<T> plain = p.c, indexed = p.c;
        gemm<Arch>(p.ta, trans_b, s.m, s.n, s.k, p.alpha, p.a.data(), p.lda, b.dense.data(), b.row_len, p.beta,
                   plain.data(), p.ldc);
        gemm_indexed<Arch>(p.ta, trans_b, s.m, s.n, s.k, p.alpha, p.a.data(), p.lda, b.source.data(), b.rows.data(),
                           p.beta, indexed.data(), p.ldc);
        CHECK_MESSAGE(std::memcmp(plain.data(), indexed.data(), plain.size() * sizeof(T)) == 0,
                      Arch::name() << " " << p.name());
      });
      std::vector<T> entry = p.c, arch_default = p.c;  // the entry point: default arch, no tiny shortcut
      gemm_indexed<T>(p.ta, trans_b, s.m, s.n, s.k, p.alpha, p.a.data(), p.lda, b.source.data(), b.rows.data(),
                      p.beta, entry.data(), p.ldc);
      gemm<simd::default_arch>(p.ta, trans_b, s.m, s.n, s.k, p.alpha, p.a.data(), p.lda, b.dense.data(), b.row_len,
                               p.beta, arch_default.data(), p.ldc);
      CHECK(std::memcmp(entry.data(), arch_default.data(), entry.size() * sizeof(T)) == 0);
    }
  }
}

TEST_CASE("gemm_indexed: other scalar types take the plain loop, equal to reference::gemm") {
  const std::size_t m = 3, n = 4, k = 5;
  std::vector<int> a(m * k), source(40), c(m * n, 7), want(m * n, 7);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = int(i % 7) - 3;
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = int(i * 5 % 11) - 5;
  const std::vector<std::size_t> rows = {9, 0, 30, 2, 17};  // k rows of n elements, overlapping
  std::vector<int> dense;
  for (std::size_t r : rows) dense.insert(dense.end(), source.begin() + long(r), source.begin() + long(r + n));
  gemm_indexed<int>(false, false, m, n, k, 2, a.data(), k, source.data(), rows.data(), 1, c.data(), n);
  reference::gemm<int>(false, false, m, n, k, 2, a.data(), k, dense.data(), n, 1, want.data(), n);
  CHECK(c == want);
}

TEST_CASE("gemm_indexed: bitwise the same on 1 and 2 threads") {
  const indexed_b<float> b(600, 256, 9);  // B [k = 600, n = 256]: above the parallel threshold
  const product<float> p(false, false, 48, 256, 600, 1.f, 0.f, 1, 10);
  REQUIRE(p.m * p.n * p.k >= gemm_detail::parallel_threshold);
  auto run = [&] {
    std::vector<float> out = p.c;
    gemm_indexed<float>(false, false, p.m, p.n, p.k, 1.f, p.a.data(), p.lda, b.source.data(), b.rows.data(), 0.f,
                        out.data(), p.ldc);
    return out;
  };
  const std::vector<float> one = run();
  struct restore {
    ~restore() { set_num_threads(1); }
  } guard;
  set_num_threads(2);
  const std::vector<float> two = run();
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
}
