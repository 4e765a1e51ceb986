#pragma once
// All calibration observers. Each is a class template on the quantization scheme, whose
// granularity decides per-tensor or per-axis statistics, and models xquant::observer:
//
//   observe(x)   accumulate statistics of a float tensor
//   ranges()     the chosen clipping range of each channel
//   params()     choose_params<Scheme>(ranges())
//   reset()      forget everything
//
//   minmax_observer                  exact running [min, max]            minmax_observer.hpp
//   moving_average_minmax_observer   EMA of batch min/max, freezable     moving_average_observer.hpp
//   moving_average_mse_observer      EMA of batch MSE-optimal ranges     moving_average_observer.hpp
//   histogram_observer               percentile clipping                 histogram_observer.hpp
//   mse_observer                     least expected quantization MSE     mse_observer.hpp
//   kl_observer                      TensorRT entropy calibration        kl_observer.hpp
//
// and, for weights (not an observer: one call on the current values),
//   exact_mse_ranges                 least quantization MSE of the values exact_mse_range.hpp

#include "xquant/calib/exact_mse_range.hpp"
#include "xquant/calib/histogram.hpp"
#include "xquant/calib/histogram_observer.hpp"
#include "xquant/calib/kl_observer.hpp"
#include "xquant/calib/minmax_observer.hpp"
#include "xquant/calib/moving_average_observer.hpp"
#include "xquant/calib/mse_observer.hpp"
#include "xquant/calib/observer_base.hpp"
