#pragma once
// batch_norm: batch normalization over the channel axis (axis 1), as PyTorch's
// nn.functional.batch_norm.
//
//   x [N, C, H, W] or [N, C]; gamma, beta [C]; running_mean, running_var [C] (plain arrays)
//   y = gamma * (x - mean) / sqrt(var + eps) + beta,   per channel
//
// Training: mean and var are the batch statistics over the M = N*H*W values of a channel,
// var biased (divided by M) for the normalisation; the running statistics are updated as
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)
// and the backward goes through the batch statistics:
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),  xhat = (x - mean) * invstd
// Evaluation: mean and var are the running statistics (constants), dx = gamma * invstd * dy.
// In both modes dgamma = sum(dy * xhat), dbeta = sum(dy).
//
// All passes walk x in memory order ([N, C] rows of H*W values). The per-channel sums are
// reduced deterministically: the batch is cut into num_threads() pieces, each piece sums
// its rows into its own per-channel partials, and the partials are added in piece order,
// so results are bit-identical run to run for a given thread count. Sums run in T lanes
// within a row and in double across rows (detail/common.hpp).

#include <array>
#include <cmath>
#include <cstddef>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/nn/functional/detail/common.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

namespace detail {

/// x seen as [N, C, inner]: the row of (image i, channel c) starts at (i * C + c) * inner.
struct channel_layout {
  std::size_t n = 0, c = 0, inner = 1;
  std::size_t count() const { return n * inner; }  ///< values per channel (M)
  std::size_t row(std::size_t i, std::size_t ch) const { return (i * c + ch) * inner; }
};

template <class T>
channel_layout batch_norm_layout(const basic_variable<T>& x, const basic_variable<T>& gamma,
                                 const basic_variable<T>& beta, const array<T>& running_mean,
                                 const array<T>& running_var, bool training, double momentum, double eps) {
  const std::size_t rank = x.value().dimension();
  check<shape_error>(rank == 2 || rank == 4, "batch_norm: input must be [N, C] or [N, C, H, W], got shape ",
                     shape_string(x.shape()));
  require_batch(x, "batch_norm");
  const auto& s = x.value().shape();
  channel_layout l{.n = s[0], .c = s[1], .inner = rank == 4 ? s[2] * s[3] : 1};
  auto per_channel = [&](const shape_t& shape, const char* name) {
    check<shape_error>(shape.size() == 1 && shape[0] == l.c, "batch_norm: ", name, " must have shape [", l.c,
                       "] (the input ", shape_string(x.shape()), " has ", l.c, " channels), got ",
                       shape_string(shape));
  };
  per_channel(gamma.shape(), "weight (gamma)");
  per_channel(beta.shape(), "bias (beta)");
  per_channel(shape_of(running_mean), "running_mean");
  per_channel(shape_of(running_var), "running_var");
  check<value_error>(!training || l.count() > 1, "batch_norm: training needs more than one value per channel, got "
                     "input shape ", shape_string(x.shape()));
  check<value_error>(momentum >= 0 && momentum <= 1, "batch_norm: momentum must be in [0, 1], got ", momentum);
  check<value_error>(eps > 0, "batch_norm: eps must be positive, got ", eps);
  return l;
}

/// Per-channel sums of fn(image, channel) -> std::array<double, K> over all rows, in memory
/// order, reduced in a fixed order (see the top of this file).
template <std::size_t K, class Fn>
std::vector<std::array<double, K>> channel_sums(const channel_layout& l, Fn fn) {
  const std::size_t pieces = piece_count(l.n);
  std::vector<std::array<double, K>> partial(pieces * l.c, std::array<double, K>{});
  parallel_for(pieces, 1, [&](std::size_t first_piece, std::size_t last_piece) {
    for (std::size_t piece = first_piece; piece < last_piece; ++piece) {
      std::array<double, K>* out = partial.data() + piece * l.c;
      for (std::size_t i = piece_begin(l.n, pieces, piece); i < piece_begin(l.n, pieces, piece + 1); ++i) {
        for (std::size_t c = 0; c < l.c; ++c) {
          const std::array<double, K> v = fn(i, c);
          for (std::size_t k = 0; k < K; ++k) out[c][k] += v[k];
        }
      }
    }
  });
  std::vector<std::array<double, K>> total(l.c, std::array<double, K>{});
  for (std::size_t piece = 0; piece < pieces; ++piece)
    for (std::size_t c = 0; c < l.c; ++c)
      for (std::size_t k = 0; k < K; ++k) total[c][k] += partial[piece * l.c + c][k];
  return total;
}

/// body(image, channel) for every row, in memory order, in parallel (rows are independent).
template <class Body>
void for_each_row(const channel_layout& l, Body body) {
  parallel_for(l.n * l.c, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) body(r / l.c, r % l.c);
  });
}

}  // namespace detail

/// Batch normalization; see the top of this file. `momentum` and `eps` as in PyTorch.
template <class T>
basic_variable<T> batch_norm(const basic_variable<T>& x, const basic_variable<T>& gamma, const basic_variable<T>& beta,
                             array<T>& running_mean, array<T>& running_var, bool training, double momentum = 0.1,
                             double eps = 1e-5) {
  const detail::channel_layout l =
      detail::batch_norm_layout(x, gamma, beta, running_mean, running_var, training, momentum, eps);
  const T* px = x.value().data();
  std::vector<T> mean(l.c), invstd(l.c), scale(l.c), shift(l.c);
  std::vector<double> var(l.c);
  for (std::size_t c = 0; c < l.c; ++c) {
    mean[c] = running_mean.data()[c];
    var[c] = running_var.data()[c];
  }
  if (training) {  // two passes (mean, then squared deviations): no cancellation
    const auto sums = detail::channel_sums<1>(l, [&](std::size_t i, std::size_t c) {
      return std::array<double, 1>{detail::sum(px + l.row(i, c), l.inner)};
    });
    for (std::size_t c = 0; c < l.c; ++c) mean[c] = T(sums[c][0] / double(l.count()));
    const auto sq = detail::channel_sums<1>(l, [&](std::size_t i, std::size_t c) {
      return std::array<double, 1>{detail::sum_sq_dev(px + l.row(i, c), l.inner, mean[c])};
    });
    for (std::size_t c = 0; c < l.c; ++c) {
      var[c] = sq[c][0] / double(l.count());
      T& rm = running_mean.data()[c];
      T& rv = running_var.data()[c];
      rm = T((1 - momentum) * double(rm) + momentum * double(mean[c]));
      rv = T((1 - momentum) * double(rv) + momentum * sq[c][0] / double(l.count() - 1));
    }
  }
  for (std::size_t c = 0; c < l.c; ++c) {
    invstd[c] = T(1 / std::sqrt(var[c] + eps));
    scale[c] = gamma.value().data()[c] * invstd[c];
    shift[c] = beta.value().data()[c] - mean[c] * scale[c];
  }
  array<T> y(x.value().shape());
  T* py = y.data();
  detail::for_each_row(l, [&, px, py](std::size_t i, std::size_t c) {
    const T* in = px + l.row(i, c);
    T* out = py + l.row(i, c);
    const T a = scale[c], b = shift[c];
    for (std::size_t j = 0; j < l.inner; ++j) out[j] = in[j] * a + b;
  });
  return autograd::make_result<T>(
      std::move(y), {x, gamma, beta},
      [l, training, mean = std::move(mean), invstd = std::move(invstd)](autograd::node<T>& n) {
        autograd::node<T>& xn = *n.inputs[0];
        autograd::node<T>& gn = *n.inputs[1];
        autograd::node<T>& bn = *n.inputs[2];
        const T* dy = n.grad.data();
        const T* px = xn.value.data();
        // sum(dy) and sum(dy * (x - mean)) per channel
        const auto sums = detail::channel_sums<2>(l, [&](std::size_t i, std::size_t c) {
          return std::array<double, 2>{detail::sum(dy + l.row(i, c), l.inner),
                                       detail::dot_shifted(dy + l.row(i, c), px + l.row(i, c), l.inner, mean[c])};
        });
        if (gn.requires_grad) {
          T* dgamma = autograd::input_grad(gn).data();
          for (std::size_t c = 0; c < l.c; ++c) dgamma[c] += T(sums[c][1] * double(invstd[c]));
        }
        if (bn.requires_grad) {
          T* dbeta = autograd::input_grad(bn).data();
          for (std::size_t c = 0; c < l.c; ++c) dbeta[c] += T(sums[c][0]);
        }
        if (!xn.requires_grad) return;
        // dx = k1 * dy + k2 * (x - mean) + k3; in eval k2 = k3 = 0 (the statistics are constants)
        std::vector<T> k1(l.c), k2(l.c, T(0)), k3(l.c, T(0));
        const double count = double(l.count());
        for (std::size_t c = 0; c < l.c; ++c) {
          const double g = gn.value.data()[c], s = invstd[c];
          k1[c] = T(g * s);
          if (training) {
            k2[c] = T(-g * s * s * s * sums[c][1] / count);
            k3[c] = T(-g * s * sums[c][0] / count);
          }
        }
        T* dx = autograd::input_grad(xn).data();
        detail::for_each_row(l, [&, dy, px, dx](std::size_t i, std::size_t c) {
          const T* gy = dy + l.row(i, c);
          const T* in = px + l.row(i, c);
          T* gx = dx + l.row(i, c);
          const T a = k1[c], b = k2[c], d = k3[c], mu = mean[c];
          for (std::size_t j = 0; j < l.inner; ++j) gx[j] += a * gy[j] + b * (in[j] - mu) + d;
        });
      });
}

}  // namespace xquant::nn::functional
