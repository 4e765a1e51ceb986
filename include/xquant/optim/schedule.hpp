#pragma once
// Learning-rate schedules: small value types with `double lr_at(std::size_t t) const`.
//
// A schedule is a pure function of the step (or epoch) index, not an object that is
// stepped, so resuming from a checkpoint needs only the index: training calls
// `opt.set_lr(schedule.lr_at(t))` before step t. Whether t counts optimizer steps or
// epochs is the caller's choice; total_steps / step_size are in the same unit.
//
//   cosine_schedule(base, T, min):  lr(t) = min + (base - min) * (1 + cos(pi * t / T)) / 2
//                                   for t < T, and min for t >= T (no restart).
//                                   lr(0) is exactly base, lr(T) exactly min.
//                                   (torch CosineAnnealingLR's closed form; PyTorch's
//                                   recursive form keeps oscillating past T.)
//   step_schedule(base, s, gamma):  lr(t) = base * gamma^floor(t / s)   (torch StepLR)
//
// Per step, the reference recipe's "lr 0.05 with cosine decay to 0" over 10 epochs of
// n batches is cosine_schedule(0.05, 10 * n) with lr_at(global_step).

#include <cmath>
#include <concepts>
#include <cstddef>
#include <numbers>

#include "xquant/core/error.hpp"

namespace xquant::optim {

template <class S>
concept lr_schedule = requires(const S& s, std::size_t t) {
  { s.lr_at(t) } -> std::convertible_to<double>;
};

class cosine_schedule {
 public:
  /// Throws value_error unless base_lr and min_lr are finite and >= 0 and total_steps >= 1.
  cosine_schedule(double base_lr, std::size_t total_steps, double min_lr = 0)
      : base_(base_lr), min_(min_lr), total_(total_steps) {
    check(std::isfinite(base_lr) && base_lr >= 0, "cosine_schedule: base_lr must be a finite number >= 0, got ",
          base_lr);
    check(std::isfinite(min_lr) && min_lr >= 0, "cosine_schedule: min_lr must be a finite number >= 0, got ",
          min_lr);
    check(total_steps >= 1, "cosine_schedule: total_steps must be >= 1");
  }

  double lr_at(std::size_t t) const {
    if (t == 0) return base_;
    if (t >= total_) return min_;
    const double phase = std::numbers::pi * static_cast<double>(t) / static_cast<double>(total_);
    return min_ + (base_ - min_) * (1.0 + std::cos(phase)) / 2.0;
  }

  double base_lr() const { return base_; }
  double min_lr() const { return min_; }
  std::size_t total_steps() const { return total_; }

 private:
  double base_, min_;
  std::size_t total_;
};

class step_schedule {
 public:
  /// Throws value_error unless base_lr is finite and >= 0, step_size >= 1 and gamma is
  /// finite and >= 0.
  step_schedule(double base_lr, std::size_t step_size, double gamma)
      : base_(base_lr), gamma_(gamma), step_size_(step_size) {
    check(std::isfinite(base_lr) && base_lr >= 0, "step_schedule: base_lr must be a finite number >= 0, got ",
          base_lr);
    check(step_size >= 1, "step_schedule: step_size must be >= 1");
    check(std::isfinite(gamma) && gamma >= 0, "step_schedule: gamma must be a finite number >= 0, got ", gamma);
  }

  double lr_at(std::size_t t) const {
    return base_ * std::pow(gamma_, static_cast<double>(t / step_size_));
  }

  double base_lr() const { return base_; }
  double gamma() const { return gamma_; }
  std::size_t step_size() const { return step_size_; }

 private:
  double base_, gamma_;
  std::size_t step_size_;
};

static_assert(lr_schedule<cosine_schedule> && lr_schedule<step_schedule>);

}  // namespace xquant::optim
