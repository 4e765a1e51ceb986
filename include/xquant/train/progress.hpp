#pragma once
// progress: what a training loop prints.
//
// On a terminal, one line per epoch, redrawn in place with '\r' as batches finish:
//
//   epoch 3/10 [=========>          ] 235/469  12345 img/s  0:12 eta 0:10  loss 0.4321  acc 84.52%
//
// and, when the epoch ends, drawn once more complete (elapsed time, no eta) and ended
// with a newline:
//
//   epoch 3/10 [====================] 469/469  12345 img/s  0:24  loss 0.4012  acc 85.10%
//
// Anywhere else (a pipe, a log file, CI), exactly one plain line per epoch and nothing
// in between, so logs stay small and greppable:
//
//   epoch 3/10  loss 0.4012  acc 85.10%  time 24.3s  12345 img/s
//
// loss is the running mean of the per-batch mean losses weighted by batch size (the
// mean over the images seen so far this epoch), acc the share of them classified
// correctly; acc is omitted when update() is never given a count of correct ones.
// end_epoch("test_acc 88.10%") appends the text to the epoch's last line.
//
// Redraws are rate-limited (10 per second by default): update() costs a clock read
// and a comparison on the other calls, nothing that shows next to a training step.
//
// For tests and embedding, the stream, the terminal decision and the clock are
// injectable (progress_options). By default the output is std::cout, and it is treated
// as a terminal when isatty(fileno(stdout)) says so; another stream is never a terminal
// unless options.terminal says it is.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#if defined(_WIN32)
#include <io.h>
#else
#include <unistd.h>
#endif

#include "xquant/core/error.hpp"

namespace xquant::train {

struct progress_options {
  std::ostream* out = nullptr;           ///< nullptr: std::cout
  std::optional<bool> terminal;          ///< unset: isatty() for std::cout / std::cerr, else false
  double max_redraws_per_second = 10;    ///< terminal mode; 0 redraws on every update
  std::size_t bar_width = 20;
  std::function<double()> clock;         ///< monotonic seconds; unset: std::chrono::steady_clock
};

namespace detail {

inline bool stream_is_terminal(const std::ostream* out) {
#if defined(_WIN32)
  if (out == &std::cout) return ::_isatty(::_fileno(stdout)) != 0;
  if (out == &std::cerr || out == &std::clog) return ::_isatty(::_fileno(stderr)) != 0;
#else
  if (out == &std::cout) return ::isatty(::fileno(stdout)) != 0;
  if (out == &std::cerr || out == &std::clog) return ::isatty(::fileno(stderr)) != 0;
#endif
  return false;
}

/// "m:ss", or "h:mm:ss" from an hour on; whole seconds, rounded down.
inline void append_duration(std::string& s, double seconds) {
  const long long total = seconds > 0 && std::isfinite(seconds) ? static_cast<long long>(seconds) : 0;
  char buf[48];
  if (total >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", total / 60, total % 60);
  }
  s.append(buf);
}

template <class... Args>
void append_format(std::string& s, const char* format, Args... args) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, format, args...);
  if (n > 0) s.append(buf, static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n) : sizeof buf - 1);
}

}  // namespace detail

class progress {
 public:
  /// Throws value_error when epochs or steps_per_epoch is 0 or the redraw rate is
  /// negative.
  progress(std::size_t epochs, std::size_t steps_per_epoch, progress_options options = {})
      : epochs_(epochs), steps_per_epoch_(steps_per_epoch), options_(std::move(options)) {
    check(epochs >= 1 && steps_per_epoch >= 1, "progress: epochs and steps_per_epoch must be >= 1, got ", epochs,
          " and ", steps_per_epoch);
    check(options_.max_redraws_per_second >= 0, "progress: max_redraws_per_second must be >= 0, got ",
          options_.max_redraws_per_second);
    out_ = options_.out != nullptr ? options_.out : &std::cout;
    terminal_ = options_.terminal.value_or(detail::stream_is_terminal(out_));
    min_interval_ = options_.max_redraws_per_second > 0 ? 1.0 / options_.max_redraws_per_second : 0.0;
    line_.reserve(160);
  }

  ~progress() {
    if (bar_shown_) {
      try {
        *out_ << '\n' << std::flush;
      } catch (...) {
      }
    }
  }

  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  /// Starts epoch `epoch` (0-based; shown as epoch + 1 of epochs) and its clock.
  void begin_epoch(std::size_t epoch) {
    check(epoch < epochs_, "progress: epoch ", epoch, " is out of range for ", epochs_, " epochs (0-based)");
    if (bar_shown_) *out_ << '\n';
    bar_shown_ = false;
    epoch_ = epoch;
    in_epoch_ = true;
    steps_ = images_ = correct_ = 0;
    loss_sum_ = 0;
    has_accuracy_ = false;
    start_ = now();
    last_draw_ = start_;
    drawn_length_ = 0;
  }

  /// One finished batch: its size and mean loss.
  void update(std::size_t batch_size, double batch_loss) { record(batch_size, batch_loss, 0, false); }

  /// One finished batch: its size, mean loss and number of correct predictions.
  void update(std::size_t batch_size, double batch_loss, std::size_t batch_correct) {
    record(batch_size, batch_loss, batch_correct, true);
  }

  /// Ends the epoch: the terminal line is completed, or the plain line printed.
  /// `extra` (e.g. "test_acc 88.10%") is appended to it.
  void end_epoch(std::string_view extra = {}) {
    check(in_epoch_, "progress: end_epoch() without begin_epoch()");
    const double elapsed = now() - start_;
    line_.clear();
    if (terminal_) {
      compose_bar(elapsed, true);
    } else {
      detail::append_format(line_, "epoch %zu/%zu  loss %.4f", epoch_ + 1, epochs_, mean_loss());
      if (has_accuracy_) detail::append_format(line_, "  acc %.2f%%", accuracy());
      detail::append_format(line_, "  time %.1fs", elapsed);
      append_rate(elapsed);
    }
    if (!extra.empty()) line_.append("  ").append(extra);
    if (terminal_) {
      draw();
      *out_ << '\n';
    } else {
      *out_ << line_ << '\n';
    }
    *out_ << std::flush;
    bar_shown_ = false;
    in_epoch_ = false;
  }

  /// Prints a line of text without breaking the bar (it is redrawn below the text).
  void message(std::string_view text) {
    if (terminal_ && bar_shown_) {
      std::string clear(text);
      if (clear.size() < drawn_length_) clear.append(drawn_length_ - clear.size(), ' ');
      *out_ << '\r' << clear << '\n';
      drawn_length_ = 0;
      draw();
    } else {
      *out_ << text << '\n';
    }
    *out_ << std::flush;
  }

  /// Mean loss over the images of this epoch so far.
  double mean_loss() const { return images_ > 0 ? loss_sum_ / static_cast<double>(images_) : 0.0; }
  /// Percentage of correct predictions over the images of this epoch so far.
  double accuracy() const {
    return images_ > 0 ? 100.0 * static_cast<double>(correct_) / static_cast<double>(images_) : 0.0;
  }
  std::size_t steps() const { return steps_; }
  std::size_t images() const { return images_; }
  bool is_terminal() const { return terminal_; }

 private:
  double now() const {
    if (options_.clock) return options_.clock();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  void record(std::size_t batch_size, double batch_loss, std::size_t batch_correct, bool with_accuracy) {
    check(in_epoch_, "progress: update() without begin_epoch()");
    ++steps_;
    images_ += batch_size;
    loss_sum_ += batch_loss * static_cast<double>(batch_size);
    correct_ += batch_correct;
    has_accuracy_ = has_accuracy_ || with_accuracy;
    if (!terminal_) return;
    const double t = now();
    if (bar_shown_ && t - last_draw_ < min_interval_) return;
    last_draw_ = t;
    line_.clear();
    compose_bar(t - start_, false);
    draw();
    *out_ << std::flush;
  }

  void append_rate(double elapsed) {
    if (elapsed > 0) {
      detail::append_format(line_, "  %.0f img/s", static_cast<double>(images_) / elapsed);
    } else {
      line_.append("  - img/s");
    }
  }

  void compose_bar(double elapsed, bool final) {
    detail::append_format(line_, "epoch %zu/%zu [", epoch_ + 1, epochs_);
    const std::size_t width = options_.bar_width;
    const std::size_t shown = steps_ < steps_per_epoch_ ? steps_ : steps_per_epoch_;
    const std::size_t filled = width * shown / steps_per_epoch_;
    line_.append(filled, '=');
    if (filled < width) {
      line_.push_back('>');
      line_.append(width - filled - 1, ' ');
    }
    detail::append_format(line_, "] %zu/%zu", steps_, steps_per_epoch_);
    append_rate(elapsed);
    line_.append("  ");
    detail::append_duration(line_, elapsed);
    if (!final) {
      line_.append(" eta ");
      if (steps_ > 0 && steps_ <= steps_per_epoch_) {
        detail::append_duration(line_, elapsed / static_cast<double>(steps_) *
                                           static_cast<double>(steps_per_epoch_ - steps_));
      } else {
        line_.push_back('-');
      }
    }
    detail::append_format(line_, "  loss %.4f", mean_loss());
    if (has_accuracy_) detail::append_format(line_, "  acc %.2f%%", accuracy());
  }

  /// '\r' + line_, padded with spaces over a longer previous line.
  void draw() {
    *out_ << '\r' << line_;
    if (line_.size() < drawn_length_) {
      for (std::size_t i = line_.size(); i < drawn_length_; ++i) *out_ << ' ';
    }
    drawn_length_ = line_.size();
    bar_shown_ = true;
  }

  std::size_t epochs_, steps_per_epoch_;
  progress_options options_;
  std::ostream* out_ = nullptr;
  bool terminal_ = false;
  double min_interval_ = 0;

  std::size_t epoch_ = 0, steps_ = 0, images_ = 0, correct_ = 0;
  double loss_sum_ = 0;
  bool has_accuracy_ = false, in_epoch_ = false, bar_shown_ = false;
  double start_ = 0, last_draw_ = 0;
  std::size_t drawn_length_ = 0;
  std::string line_;
};

}  // namespace xquant::train
