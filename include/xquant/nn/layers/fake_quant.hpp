#pragma once
// Fake-quantization modules: the state around functional/fake_quant.hpp that QAT needs.
//
//   fake_quant<Scheme, Observer>  activations: an observer (default the moving-average
//                                 min/max of PyTorch's QAT) proposes the parameters
//   weight_fake_quant<Scheme>     weights: the parameters follow the current weight values
//                                 (min/max per output channel) at every forward
//   lsq_fake_quant<Scheme>        LSQ: the step size is a learned parameter (and the
//                                 layer versions lsq_weight_fake_quant,
//                                 lsq_activation_fake_quant)
//   pact_fake_quant<Scheme>       PACT: the clipping level alpha is a learned parameter
//
// Common behaviour:
//   - enable(false) makes forward the identity (FP32 warm-up, or to measure the float
//     model); the quantization state is kept. Observing is separate (see fake_quant).
//   - Per tensor there is one channel; per_axis<A> schemes take the size of axis A at
//     construction (the checkpoint tensors need a fixed shape) and reject an input with
//     another size before touching any state.
//   - Checkpoints hold float arrays only. Zero points are stored as floats: they are
//     integers of at most 16 bits, exact in float, and are checked to be integral and in
//     range when read back. "initialized" buffers are 0 or 1.
//
// Names (module::parameters()/buffers()): fake_quant and weight_fake_quant have buffers
// "scale" and "zero_point" [channels]; lsq_fake_quant has parameter "scale" and buffers
// "zero_point" and "initialized" [1]; pact_fake_quant has parameter "alpha" and buffer
// "initialized".
//
// The layers (qat.hpp) hold weight_fake_quant / fake_quant, or for schemes with the lsq
// estimator tag lsq_weight_fake_quant / lsq_activation_fake_quant. Both kinds of weight
// quantizer answer params_for_weight(w), both kinds of activation quantizer params(),
// freeze() and unfreeze().

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "xquant/calib/exact_mse_range.hpp"
#include "xquant/calib/minmax_observer.hpp"
#include "xquant/calib/moving_average_observer.hpp"
#include "xquant/calib/observer_base.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/nn/functional/fake_quant.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

namespace detail {

/// Throws shape_error unless a per_axis<A> scheme's axis A of x exists and has `channels`
/// elements; per_tensor accepts any shape.
template <quant_scheme Scheme>
void check_channels(const variable& x, std::size_t channels, const char* who) {
  if constexpr (Scheme::is_per_axis) {
    constexpr auto axis = static_cast<std::size_t>(Scheme::axis);
    check<shape_error>(x.value().dimension() > axis && x.value().shape()[axis] == channels, who, ": the scheme is "
                       "per_axis<", Scheme::axis, "> with ", channels, " channels, but the input has shape ",
                       shape_string(x.shape()));
  }
}

/// The channel count a module of Scheme is built with: 1 per tensor, > 0 per axis.
template <quant_scheme Scheme>
std::size_t checked_channels(std::size_t channels, const char* who) {
  if constexpr (Scheme::is_per_axis) {
    check(channels > 0, who, ": a per_axis scheme needs the channel count (size of axis ", Scheme::axis, ")");
  } else {
    check(channels == 1, who, ": a per_tensor scheme has one channel, got ", channels);
  }
  return channels;
}

/// An integer zero point stored in a float buffer, checked on the way back.
inline std::int32_t zero_point_from_float(float z, std::size_t c, const char* who) {
  check(std::isfinite(z) && std::nearbyint(z) == z && std::abs(z) <= 65536.0f, who, ": zero_point[", c, "] = ", z,
        " is not an integer");
  return static_cast<std::int32_t>(z);
}

/// The "initialized" flag of the learned quantizers: a [1] buffer holding 0 or 1.
inline bool flag_set(const array<float>& flag) { return flag.size() == 1 && flag.data()[0] != 0.0f; }

}  // namespace detail

/// What fake_quant and weight_fake_quant share: the parameter buffers and the switch.
template <quant_scheme Scheme>
class fake_quant_base : public module {
 public:
  using scheme_type = Scheme;

  /// Current parameters, read from the buffers (so a loaded checkpoint takes effect).
  quant_params params() const {
    quant_params p;
    p.axis = Scheme::is_per_axis ? Scheme::axis : -1;
    for (std::size_t c = 0; c < channels_; ++c) {
      p.scale.push_back(scale_.data()[c]);
      p.zero_point.push_back(detail::zero_point_from_float(zero_point_.data()[c], c, who_));
    }
    validate<Scheme>(p);
    return p;
  }
  /// Sets the parameters (validated), e.g. from post-training calibration.
  void set_params(const quant_params& p) {
    validate<Scheme>(p);
    check<shape_error>(p.channels() == channels_, who_, ": ", p.channels(), " channels of parameters for a "
                       "quantizer of ", channels_);
    for (std::size_t c = 0; c < channels_; ++c) {
      scale_.data()[c] = p.scale[c];
      zero_point_.data()[c] = static_cast<float>(p.zero_point[c]);
    }
  }

  /// Forward is fake quantization (true) or the identity (false).
  void enable(bool on = true) { enabled_ = on; }
  void disable() { enable(false); }
  bool enabled() const { return enabled_; }

  std::size_t channels() const { return channels_; }
  const array<float>& scale() const { return scale_; }
  const array<float>& zero_point() const { return zero_point_; }

 protected:
  explicit fake_quant_base(std::size_t channels, const char* who)
      : who_(who),
        channels_(detail::checked_channels<Scheme>(channels, who)),
        scale_(shape_t{channels_}, 1.0f),
        zero_point_(shape_t{channels_}, 0.0f) {
    register_buffer("scale", scale_);
    register_buffer("zero_point", zero_point_);
  }
  /// Scale 1, zero point 0 (PyTorch FakeQuantize's initial buffers; valid for every scheme).
  void reset_buffers() {
    std::fill(scale_.begin(), scale_.end(), 1.0f);
    std::fill(zero_point_.begin(), zero_point_.end(), 0.0f);
  }

 private:
  const char* who_;  // the module's name in error messages
  std::size_t channels_;
  array<float> scale_, zero_point_;
  bool enabled_ = true;
};

/// Activation fake quantization with an observer (PyTorch's FakeQuantize).
///
///   training mode, not frozen:  observer.observe(x); buffers = observer.params();
///                               y = fake_quant(x, buffers)
///   eval mode, or frozen:       y = fake_quant(x, buffers)       (no observing)
///   disabled:                   y = x; observing goes on as above (PyTorch keeps
///                               observer_enabled and fake_quant_enabled apart), so an
///                               FP32 warm-up can collect ranges
///
/// Before anything was observed (or loaded, or set) the buffers hold scale 1, zero point
/// 0. freeze() also freezes an observer that has freeze() itself. The observer's running
/// statistics are not checkpointed, only the parameters: a resumed run that is not frozen
/// restarts the observer's statistics from its next batch.
template <quant_scheme Scheme, xquant::observer Observer = default_activation_observer<Scheme>>
class fake_quant : public fake_quant_base<Scheme> {
  static_assert(std::is_same_v<typename Observer::scheme_type, Scheme>,
                "xquant: the observer of fake_quant<Scheme> must observe for the same Scheme");

 public:
  using observer_type = Observer;

  /// channels: 1 per tensor; the size of the scheme's axis per axis.
  explicit fake_quant(std::size_t channels = 1, Observer obs = Observer())
      : fake_quant_base<Scheme>(channels, "fake_quant"), observer_(std::move(obs)) {}

  variable forward(const variable& x) override {
    detail::check_channels<Scheme>(x, this->channels(), "fake_quant");
    if (this->is_training() && !frozen_) {
      observer_.observe(x.value());
      const quant_params p = observer_.params();
      this->set_params(p);
      return this->enabled() ? functional::fake_quant<Scheme>(x, p) : x;
    }
    if (!this->enabled()) return x;
    return functional::fake_quant<Scheme>(x, this->params());
  }

  /// Stop / resume observing (the parameters stay as they are).
  void freeze() {
    frozen_ = true;
    if constexpr (requires(Observer& o) { o.freeze(); }) observer_.freeze();
  }
  void unfreeze() {
    frozen_ = false;
    if constexpr (requires(Observer& o) { o.unfreeze(); }) observer_.unfreeze();
  }
  bool frozen() const { return frozen_; }

  Observer& observer() { return observer_; }
  const Observer& observer() const { return observer_; }

  /// Forgets the observed statistics; parameters back to scale 1, zero point 0.
  void reset_parameters(std::mt19937&) override {
    observer_.reset();
    this->reset_buffers();
  }

 private:
  Observer observer_;
  bool frozen_ = false;
};

/// Weight fake quantization whose parameters follow the weights: at every forward (in
/// training and in eval) the per-channel min/max of the current values gives the
/// parameters (minmax_observer's choose_params; for mse_clipping schemes the MSE-optimal
/// range of the current values, exact_mse_ranges), which are stored in the buffers and
/// used at once. Nothing to freeze: "weight ranges keep following the weights".
template <quant_scheme Scheme>
class weight_fake_quant : public fake_quant_base<Scheme> {
 public:
  /// channels: 1 per tensor; the size of the scheme's axis (output channels) per axis.
  explicit weight_fake_quant(std::size_t channels = 1) : fake_quant_base<Scheme>(channels, "weight_fake_quant") {}

  variable forward(const variable& w) override {
    detail::check_channels<Scheme>(w, this->channels(), "weight_fake_quant");
    if (!this->enabled()) return w;
    const quant_params p = params_for(w.value());
    this->set_params(p);
    return functional::fake_quant<Scheme>(w, p);
  }

  /// The parameters weight_fake_quant uses for weights `w` (also for conversion).
  static quant_params params_for(const array<float>& w) {
    if constexpr (Scheme::mse_clipped) {
      return choose_params<Scheme>(std::span<const value_range>(exact_mse_ranges<Scheme>(w)));
    } else {
      minmax_observer<Scheme> observer;
      observer.observe(w);
      return observer.params();
    }
  }
  /// What every layer weight quantizer answers (see lsq_weight_fake_quant): params_for(w).
  quant_params params_for_weight(const array<float>& w) const { return params_for(w); }

  void reset_parameters(std::mt19937&) override { this->reset_buffers(); }
};

// ======================================================================================
// learned quantizers
// ======================================================================================

/// How lsq_fake_quant initialises its step size from the first training input.
enum class lsq_init {
  mean_abs,  ///< the paper's 2 mean(|v|) / sqrt(Q_P) per channel (lsq_initial_scale)
  min_max,   ///< the scale choose_params<Scheme> gives for the input's min/max per channel (a
             ///< calibrated start; the zero point stays as configured unless zero_point_from_data)
};

struct lsq_config {
  std::size_t channels = 1;  ///< 1 per tensor; the size of the scheme's axis per axis
  functional::lsq_count count = functional::lsq_count::per_scale;  ///< N of the gradient scale
  std::int32_t zero_point = 0;  ///< fixed, for every channel
  /// Per tensor only: the zero point is chosen when the step size is initialised, from the
  /// first batch's min/max (choose_params<Scheme>), and then stays fixed; `zero_point` is
  /// only its value before that.
  bool zero_point_from_data = false;
  lsq_init init = lsq_init::mean_abs;

  /// Weights: one step size per channel of a per_axis scheme (or 1), N = elements per channel.
  static lsq_config weights(std::size_t channels = 1) {
    lsq_config c;
    c.channels = channels;
    return c;
  }
  /// Activations: one step size, N = features per sample (the paper's N_F), fixed zero point.
  static lsq_config activations(std::int32_t zero_point = 0) {
    lsq_config c;
    c.count = functional::lsq_count::per_sample;
    c.zero_point = zero_point;
    return c;
  }
  /// Activations whose zero point comes from the first batch.
  static lsq_config activations_from_data() {
    lsq_config c = activations();
    c.zero_point_from_data = true;
    return c;
  }
};

/// LSQ (functional::fake_quant_lsq) with the step size as parameter "scale".
///
/// The first forward with the quantizer enabled, in training mode, initialises the step
/// size from its input (for weights their initial values, for activations the first
/// batch): lsq_init::mean_abs is the paper's 2 mean(|x|) / sqrt(Q_P) per channel
/// (lsq_initial_scale), lsq_init::min_max the scale choose_params<Scheme> gives for the
/// input's min/max per channel, i.e. where a min/max quantizer would start. The
/// "initialized" buffer records that, so a loaded checkpoint is not initialised again. An evaluation
/// forward before that is a value_error. Every forward first clamps the parameter in
/// place to >= learned_min_scale (as PyTorch's _LearnableFakeQuantize does), so the
/// checkpointed and converted step size is the one used.
///
/// Zero point. Fixed (lsq_config::zero_point), or with lsq_config::zero_point_from_data
/// chosen at initialisation as choose_params<Scheme> does for the first batch's [min, max]:
/// qmin when the batch has no negative value (an activation after ReLU / ReLU6: all levels
/// for the positive side, zero at the scheme's qmin, as in the paper's unsigned
/// activations), else the level that splits the range between negative and positive
/// values in the proportion of that batch (always 0 for a symmetric scheme). It is not
/// learned afterwards (LSQ+, Bhalgat et al. 2020, would learn it as an offset).
///
/// Freezing. freeze() stops the step-size updates: the parameter no longer takes part in
/// autograd (requires_grad false) and its gradient buffer is dropped, so optimizers skip
/// it (optim::sgd updates only parameters with a gradient; momentum does not carry it on).
/// This is what "activation ranges frozen" means for a learned range: the quantization
/// grid stays where it is while the weights adapt to it. The input gradient is unchanged.
/// unfreeze() makes the step size learnable again (an optimizer's momentum buffer for it
/// resumes from where it was).
template <quant_scheme Scheme>
class lsq_fake_quant : public module {
 public:
  using scheme_type = Scheme;

  explicit lsq_fake_quant(const lsq_config& config = {}) : config_(config) {
    const std::size_t channels = detail::checked_channels<Scheme>(config.channels, "lsq_fake_quant");
    (void)functional::detail::lsq_zero_points<Scheme>({config.zero_point}, 1);  // validates it
    check(!config.zero_point_from_data || !Scheme::is_per_axis,
          "lsq_fake_quant: zero_point_from_data is for per_tensor schemes");
    scale_ = variable(array<float>(shape_t{channels}, 1.0f));
    zero_point_ = array<float>(shape_t{channels}, static_cast<float>(config.zero_point));
    initialized_ = array<float>(shape_t{1}, 0.0f);
    register_parameter("scale", scale_);
    register_buffer("zero_point", zero_point_);
    register_buffer("initialized", initialized_);
  }

  variable forward(const variable& x) override {
    detail::check_channels<Scheme>(x, config_.channels, "lsq_fake_quant");
    if (!enabled_) return x;
    if (!initialized()) initialize_from(x.value());
    for (float& s : scale_.value()) s = std::max(s, functional::learned_min_scale);
    return functional::fake_quant_lsq<Scheme>(x, scale_, options());
  }

  /// The step sizes and zero points as quant_params (what conversion uses).
  quant_params params() const {
    quant_params p;
    p.axis = Scheme::is_per_axis ? Scheme::axis : -1;
    for (std::size_t c = 0; c < config_.channels; ++c) {
      p.scale.push_back(std::max(scale_.value().data()[c], functional::learned_min_scale));
      p.zero_point.push_back(detail::zero_point_from_float(zero_point_.data()[c], c, "lsq_fake_quant"));
    }
    return p;
  }
  functional::lsq_options options() const {
    std::vector<std::int32_t> z(config_.channels);
    for (std::size_t c = 0; c < z.size(); ++c)
      z[c] = detail::zero_point_from_float(zero_point_.data()[c], c, "lsq_fake_quant");
    return {.zero_point = std::move(z), .count = config_.count, .grad_scale = 0};
  }

  void enable(bool on = true) { enabled_ = on; }
  void disable() { enable(false); }
  bool enabled() const { return enabled_; }
  bool initialized() const { return detail::flag_set(initialized_); }

  /// Stop / resume learning the step size (see the class comment).
  void freeze() {
    frozen_ = true;
    scale_.set_requires_grad(false);
    scale_.grad() = array<float>();
  }
  void unfreeze() {
    frozen_ = false;
    scale_.set_requires_grad(true);
  }
  bool frozen() const { return frozen_; }

  variable& scale() { return scale_; }
  const array<float>& zero_point() const { return zero_point_; }
  const lsq_config& config() const { return config_; }

  /// Step size 1 (zero point as configured), not initialised: the next training forward
  /// initialises from data.
  void reset_parameters(std::mt19937&) override {
    std::fill(scale_.value().begin(), scale_.value().end(), 1.0f);
    std::fill(zero_point_.begin(), zero_point_.end(), static_cast<float>(config_.zero_point));
    initialized_.data()[0] = 0.0f;
  }

 private:
  void initialize_from(const array<float>& x) {
    check(is_training(), "lsq_fake_quant: the step size is not initialised; run a training forward (it "
                         "initialises from that input) or load a checkpoint before evaluating");
    quant_params ranged;  // choose_params of the input's min/max, when needed
    if (config_.zero_point_from_data || config_.init == lsq_init::min_max) {
      minmax_observer<Scheme> observer;  // validates (non-empty, finite)
      observer.observe(x);
      ranged = observer.params();
    }
    if (config_.zero_point_from_data) zero_point_.data()[0] = static_cast<float>(ranged.zero_point[0]);
    if (config_.init == lsq_init::min_max) {
      std::copy(ranged.scale.begin(), ranged.scale.end(), scale_.value().begin());
    } else {
      const std::int32_t z = detail::zero_point_from_float(zero_point_.data()[0], 0, "lsq_fake_quant");
      const array<float> s = functional::lsq_initial_scale<Scheme>(x, z);
      std::copy(s.begin(), s.end(), scale_.value().begin());
    }
    initialized_.data()[0] = 1.0f;
  }

  lsq_config config_;
  variable scale_;
  array<float> zero_point_, initialized_;
  bool enabled_ = true;
  bool frozen_ = false;
};

/// The step-size initialisation of the layers' LSQ quantizers. QAT fine-tunes a trained
/// FP32 model, so they start where the min/max quantizers would (calibrated ranges) and
/// learn from there; the paper's mean_abs rule, meant for training from scratch, starts
/// far from the FP32 model at low bit widths (cnn w4a4: 36 % test accuracy after
/// calibration instead of 91 %).
inline constexpr lsq_init layer_lsq_init = lsq_init::min_max;

/// The weight quantizer of a layer whose weight scheme has the lsq tag: one learned step
/// size per output channel (per_axis<0>) or one per tensor, N = N_W, zero point 0,
/// initialised from the weights' min/max.
template <quant_scheme Scheme>
class lsq_weight_fake_quant : public lsq_fake_quant<Scheme> {
 public:
  explicit lsq_weight_fake_quant(std::size_t channels = 1) : lsq_fake_quant<Scheme>(config(channels)) {}
  /// The learned step sizes (they do not depend on w): what conversion uses.
  quant_params params_for_weight(const array<float>&) const { return this->params(); }

 private:
  static lsq_config config(std::size_t channels) {
    lsq_config c = lsq_config::weights(channels);
    c.init = layer_lsq_init;
    return c;
  }
};

/// The output quantizer of a layer whose activation scheme has the lsq tag: one learned
/// step size, N = N_F, step size and zero point from the first batch's min/max
/// (lsq_config::activations_from_data; zero point qmin after ReLU / ReLU6).
template <quant_scheme Scheme>
class lsq_activation_fake_quant : public lsq_fake_quant<Scheme> {
 public:
  explicit lsq_activation_fake_quant(std::size_t channels = 1) : lsq_fake_quant<Scheme>(config(channels)) {}

 private:
  static lsq_config config(std::size_t channels) {
    lsq_config c = lsq_config::activations_from_data();
    c.channels = channels;
    c.init = layer_lsq_init;
    return c;
  }
};

struct pact_config {
  std::size_t channels = 1;  ///< 1 per tensor; the size of the scheme's axis per axis
  /// > 0: the initial alpha of every channel; 0: the maximum of the first training batch
  /// (per channel), i.e. the min/max range.
  float initial_alpha = 0;
};

/// PACT (functional::fake_quant_pact) with the clipping level as parameter "alpha".
/// Initialisation as for lsq_fake_quant, from pact_config::initial_alpha or from the first
/// training batch (alpha = its maximum, floored like the functional op's). Every forward
/// first clamps alpha in place to >= qmax * learned_min_scale. Disabled, forward is the
/// identity, not a clip at [0, alpha].
template <quant_scheme Scheme>
class pact_fake_quant : public module {
 public:
  using scheme_type = Scheme;

  explicit pact_fake_quant(const pact_config& config = {}) : config_(config) {
    const std::size_t channels = detail::checked_channels<Scheme>(config.channels, "pact_fake_quant");
    check(std::isfinite(config.initial_alpha) && config.initial_alpha >= 0,
          "pact_fake_quant: initial_alpha must be finite and >= 0 (0: from the first batch), got ",
          config.initial_alpha);
    alpha_ = variable(array<float>(shape_t{channels}, 1.0f));
    initialized_ = array<float>(shape_t{1}, 0.0f);
    register_parameter("alpha", alpha_);
    register_buffer("initialized", initialized_);
    set_initial_alpha();
  }

  variable forward(const variable& x) override {
    detail::check_channels<Scheme>(x, config_.channels, "pact_fake_quant");
    if (!enabled_) return x;
    if (!initialized()) initialize_from(x.value());
    for (float& a : alpha_.value()) a = std::max(a, min_alpha());
    return functional::fake_quant_pact<Scheme>(x, alpha_);
  }

  /// scale alpha / qmax, zero point 0 (what conversion uses).
  quant_params params() const {
    quant_params p;
    p.axis = Scheme::is_per_axis ? Scheme::axis : -1;
    for (float a : alpha_.value()) {
      p.scale.push_back(std::max(a, min_alpha()) / static_cast<float>(Scheme::qmax));
      p.zero_point.push_back(0);
    }
    return p;
  }

  void enable(bool on = true) { enabled_ = on; }
  void disable() { enable(false); }
  bool enabled() const { return enabled_; }
  bool initialized() const { return detail::flag_set(initialized_); }

  variable& alpha() { return alpha_; }
  const pact_config& config() const { return config_; }

  void reset_parameters(std::mt19937&) override { set_initial_alpha(); }

 private:
  static float min_alpha() { return static_cast<float>(Scheme::qmax) * functional::learned_min_scale; }

  void set_initial_alpha() {
    const bool given = config_.initial_alpha > 0;
    std::fill(alpha_.value().begin(), alpha_.value().end(), given ? config_.initial_alpha : 1.0f);
    initialized_.data()[0] = given ? 1.0f : 0.0f;
  }

  void initialize_from(const array<float>& x) {
    check(is_training(), "pact_fake_quant: alpha is not initialised; run a training forward (it initialises "
                         "from that input), give pact_config::initial_alpha or load a checkpoint before evaluating");
    minmax_observer<Scheme> observer;  // validates (non-empty, finite) and finds the per-channel max
    observer.observe(x);
    const std::vector<value_range> ranges = observer.ranges();
    for (std::size_t c = 0; c < ranges.size(); ++c) alpha_.value().data()[c] = std::max(ranges[c].max, min_alpha());
    initialized_.data()[0] = 1.0f;
  }

  pact_config config_;
  variable alpha_;
  array<float> initialized_;
  bool enabled_ = true;
};

}  // namespace xquant::nn
