#pragma once
// int8_model: integer-only inference of a converted network.
//
//   auto model = runtime::int8_model(runtime::build_graph(qat_model, sample), max_batch);
//   model.run(images, batch, logits);      // float NCHW in, float logits out
//
// Construction packs every weight once and plans one arena for all activations of a chunk
// of images plus the convolutions' scratch (memory_plan.hpp); run() then allocates nothing
// and takes any batch through all layers one chunk at a time. A chunk is max_batch images,
// or fewer where that many would not keep the largest step's inputs and output within
// cache_chunk_bytes: then each layer reads what the layer before wrote from L2, not from
// L3 (resnet at batch 256, chunks of 13 images instead of one of 256: 2-6 % fewer int8
// samples in three perf runs, the frame copies 84-118 samples instead of 243-329; the arena
// 13 images' instead of 256 images'). Between the float boundary steps (quantize
// the input, dequantize the logits) everything is integer arithmetic on uint8 NHWC tensors:
// int8 GEMM with fused requantization for convolutions and dense layers, direct 3x3
// depthwise, max pooling, global average pooling, residual adds and channel concatenation
// (kernels/int8/).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/int8/add.hpp"
#include "xquant/kernels/int8/boundary.hpp"
#include "xquant/kernels/int8/concat.hpp"
#include "xquant/kernels/int8/conv.hpp"
#include "xquant/kernels/int8/depthwise.hpp"
#include "xquant/kernels/int8/gemm.hpp"
#include "xquant/kernels/int8/pool.hpp"
#include "xquant/runtime/graph_types.hpp"
#include "xquant/runtime/memory_plan.hpp"
#include "xquant/runtime/validate.hpp"

namespace xquant::runtime {

namespace detail {

namespace k8 = kernels::int8;

struct gemm_op {  // a dense layer or a convolution
  std::size_t in = 0, out = 0;
  k8::packed_weights w;
  std::vector<std::int32_t> bias;
  kernels::requant_channel_params rq;
  bool windows = false;          // false: A is the input itself (dense, 1x1 stride-1 unpadded conv)
  k8::im2col_geometry geometry;  // windows: for one image (kernels/int8/conv.hpp); run() sets the batch
};
struct depthwise_op {
  k8::depthwise_packed w;
  kernels::requant_channel_params rq;
  k8::depthwise_geometry geometry;  // for one image; run() sets the batch
};
struct add_op {
  k8::add_params p;
};
struct pool_op {};
struct average_op {
  k8::global_avg_pool_params p;  // for one image; run() sets the batch
};
struct concat_op {
  std::vector<k8::concat_input> inputs;  // channels and rescale per input; run() sets the data
};
struct quantize_op {
  k8::activation_quant q;
  std::int32_t qmin = 0, qmax = 255;
};
using op = std::variant<quantize_op, gemm_op, depthwise_op, add_op, pool_op, average_op, concat_op>;

inline k8::nhwc_shape image_shape(const value_info& v, std::size_t batch) { return {batch, v.h, v.w, v.c}; }

}  // namespace detail

class int8_model {
 public:
  /// Packs the weights of `g` and plans memory for chunks of up to max_batch images (fewer
  /// where cache_chunk_bytes says so: chunk_images()).
  explicit int8_model(runtime::graph g, std::size_t max_batch = 1) : g_(std::move(g)), max_batch_(max_batch) {
    check<value_error>(max_batch > 0, "int8_model: max_batch must be positive");
    validate(g_);
    std::size_t scratch_bytes = 0;
    for (std::size_t i = 0; i < g_.steps.size(); ++i) ops_.push_back(make_op(g_.steps[i], scratch_bytes));
    chunk_ = std::clamp<std::size_t>(cache_chunk_bytes / std::max<std::size_t>(largest_step_bytes(g_), 1), 1,
                                     max_batch);
    plan_ = plan_memory(g_, chunk_);
    scratch_offset_ = detail::align_up(plan_.arena_bytes);
    arena_.assign(scratch_offset_ + scratch_bytes, 0);
    const value_info& out = g_.values[g_.output];
    check<value_error>(out.flat, "int8_model: the model's output must be flat [N, classes] (dense or global pool)");
    output_q_ = kernels::int8::make_activation_quant(out.grid.scale, out.grid.zero_point);
  }

  /// Floats per input image (C*H*W) and per output row (classes).
  std::size_t input_size() const { return g_.input_c * g_.input_h * g_.input_w; }
  std::size_t output_size() const { return g_.values[g_.output].c; }
  std::size_t max_batch() const { return max_batch_; }
  /// Images each layer runs on at once (run() goes through all layers chunk by chunk).
  std::size_t chunk_images() const { return chunk_; }
  /// Bytes of activations (all values for chunk_images() images) and of the convolutions' scratch (one
  /// image in its zero-point frame, kernels/int8/frame.hpp).
  std::size_t activation_bytes() const { return plan_.arena_bytes; }
  std::size_t scratch_bytes() const { return arena_.size() - scratch_offset_; }
  const runtime::graph& int8_graph() const { return g_; }

  /// input: batch images, float NCHW; logits: batch x output_size() floats. Throws
  /// shape_error for wrong sizes and numeric_error for a NaN input; allocates nothing.
  void run(std::span<const float> input, std::size_t batch, std::span<float> logits) {
    check<shape_error>(input.size() == batch * input_size(), "int8_model: ", input.size(), " input floats for ",
                       batch, " images of ", input_size());
    check<shape_error>(logits.size() == batch * output_size(), "int8_model: ", logits.size(),
                       " output floats for ", batch, " images of ", output_size(), " classes");
    for (std::size_t first = 0; first < batch; first += chunk_) {
      const std::size_t n = std::min(chunk_, batch - first);
      run_chunk(input.data() + first * input_size(), n, logits.data() + first * output_size());
    }
  }

  /// Bytes of one step's inputs and output, over all of a chunk's images, that should stay
  /// in cache: half of a 1 MiB L2 (Zen 4, recent Intel cores). Chunks of 8-32 images
  /// measured alike on resnet and mobilenet, 256 slower, and mobilenet's 2-4 image chunks
  /// slightly slower (per-layer call overheads).
  static constexpr std::size_t cache_chunk_bytes = 512 * 1024;

 private:
  /// The largest bytes per image one step reads and writes.
  static std::size_t largest_step_bytes(const runtime::graph& g) {
    std::size_t largest = 0, writes = 0;
    std::vector<std::size_t> reads;
    for (const step& s : g.steps) {
      detail::step_io(s, reads, writes);
      std::size_t bytes = g.values[writes].bytes();
      for (std::size_t r : reads) bytes += g.values[r].bytes();
      largest = std::max(largest, bytes);
    }
    return largest;
  }

  std::uint8_t* buffer(std::size_t value) { return arena_.data() + plan_.offset[value]; }
  std::uint8_t* scratch() { return arena_.data() + scratch_offset_; }

  detail::op make_op(const step& s, std::size_t& scratch_bytes) {
    return std::visit([&](const auto& st) { return lower_step(st, scratch_bytes); }, s);
  }

  detail::op lower_step(const quantize_step& st, std::size_t&) {
    const activation_grid& grid = g_.values[st.out].grid;
    detail::quantize_op q;
    q.q = kernels::int8::make_activation_quant(grid.scale, grid.zero_point);
    q.qmin = grid.qmin;
    q.qmax = grid.qmax;
    return q;
  }
  detail::op lower_step(const conv_step& st, std::size_t& scratch_bytes) {
    detail::gemm_op op = gemm_of(st.in, st.out, st.w);
    if (st.kernel == 1 && st.stride == 1 && st.padding == 0) return op;
    op.windows = true;
    op.geometry = kernels::int8::make_im2col_geometry(detail::image_shape(g_.values[st.in], 1), st.kernel, st.kernel,
                                                      st.stride, st.stride, st.padding, st.padding);
    op.w = kernels::int8::pack_conv_weights(st.w.weight.data(), st.w.out, op.geometry);
    scratch_bytes = std::max(scratch_bytes, kernels::int8::implicit_conv_scratch(op.geometry));
    return op;
  }
  detail::op lower_step(const dense_step& st, std::size_t&) { return gemm_of(st.in, st.out, st.w); }
  detail::op lower_step(const depthwise_step& st, std::size_t& scratch_bytes) {
    detail::depthwise_op op;
    op.w = kernels::int8::pack_depthwise3x3(st.w.weight, st.w.bias, g_.values[st.in].grid.zero_point);
    op.rq = st.w.requant;
    op.geometry = kernels::int8::make_depthwise_geometry(detail::image_shape(g_.values[st.in], 1), st.stride);
    scratch_bytes = std::max(scratch_bytes, kernels::int8::depthwise_scratch(op.geometry));
    return op;
  }
  detail::op lower_step(const add_step& st, std::size_t&) {
    const activation_grid &a = g_.values[st.a].grid, &b = g_.values[st.b].grid, &y = g_.values[st.out].grid;
    std::int32_t lo = 0, hi = 0;
    fused_clamp(st.act, y, lo, hi);
    return detail::add_op{
        kernels::int8::make_add_params(a.scale, a.zero_point, b.scale, b.zero_point, y.scale, y.zero_point, lo, hi)};
  }
  detail::op lower_step(const max_pool_step&, std::size_t&) { return detail::pool_op{}; }
  detail::op lower_step(const global_avg_pool_step& st, std::size_t&) {
    const value_info &x = g_.values[st.in], &y = g_.values[st.out];
    return detail::average_op{kernels::int8::make_global_avg_pool_params(
        detail::image_shape(x, 1), x.grid.scale, x.grid.zero_point, y.grid.scale, y.grid.zero_point, y.grid.qmin,
        y.grid.qmax)};
  }

  detail::op lower_step(const concat_step& st, std::size_t&) {
    const activation_grid& y = g_.values[st.out].grid;
    detail::concat_op op;
    for (const std::size_t in : st.inputs) {
      const value_info& x = g_.values[in];
      op.inputs.push_back({nullptr, x.c,
                           kernels::int8::make_rescale_params(x.grid.scale, x.grid.zero_point, y.scale, y.zero_point,
                                                              y.qmin, y.qmax)});
    }
    return op;
  }

  static detail::gemm_op gemm_of(std::size_t in, std::size_t out, const lowered_weighted& w) {
    detail::gemm_op op;
    op.in = in;
    op.out = out;
    op.w = kernels::int8::pack_weights(w.weight.data(), w.out, w.depth);
    op.bias = w.bias;
    op.rq = w.requant;
    return op;
  }

  void run_chunk(const float* input, std::size_t n, float* logits) {
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      std::visit([&](auto& op) { run_op(op, g_.steps[i], input, n); }, ops_[i]);
    }
    kernels::int8::dequantize(buffer(g_.output), n * output_size(), output_q_, logits);
  }

  void run_op(detail::quantize_op& op, const step& s, const float* input, std::size_t n) {
    const std::size_t out = std::get<quantize_step>(s).out;
    const k8shape shape{n, g_.input_h, g_.input_w, g_.input_c};
    std::uint8_t* y = buffer(out);
    check<numeric_error>(kernels::int8::quantize_nchw_to_nhwc(input, shape, op.q, y),
                         "int8_model: the input holds NaN");
    if (op.qmin > 0 || op.qmax < 255) {  // a grid narrower than uint8 (e.g. 4-bit)
      const auto lo = static_cast<std::uint8_t>(op.qmin), hi = static_cast<std::uint8_t>(op.qmax);
      for (std::size_t i = 0; i < n * input_size(); ++i) y[i] = std::clamp(y[i], lo, hi);
    }
  }

  void run_op(detail::gemm_op& op, const step&, const float*, std::size_t n) {
    const value_info &x = g_.values[op.in], &y = g_.values[op.out];
    const kernels::requant_channel_args rq = op.rq.args();
    if (!op.windows) {  // dense (M = images) or 1x1 convolution (M = pixels)
      const std::size_t rows = n * x.h * x.w;
      kernels::int8::gemm(rows, buffer(op.in), x.c, op.w, op.bias.data(), rq, buffer(op.out), y.c);
      return;
    }
    kernels::int8::im2col_geometry geo = op.geometry;
    geo.in.n = n;
    kernels::int8::conv_nhwc(buffer(op.in), geo, static_cast<std::uint8_t>(x.grid.zero_point), op.w, op.bias.data(),
                             rq, buffer(op.out), scratch());
  }

  void run_op(detail::depthwise_op& op, const step& s, const float*, std::size_t n) {
    const auto& st = std::get<depthwise_step>(s);
    kernels::int8::depthwise_geometry geo = op.geometry;
    geo.in.n = n;
    kernels::int8::depthwise3x3(buffer(st.in), geo, op.w, op.rq.args(), buffer(st.out), scratch());
  }

  void run_op(detail::add_op& op, const step& s, const float*, std::size_t n) {
    const auto& st = std::get<add_step>(s);
    kernels::int8::add(buffer(st.a), buffer(st.b), n * g_.values[st.out].bytes(), op.p, buffer(st.out));
  }

  void run_op(detail::pool_op&, const step& s, const float*, std::size_t n) {
    const auto& st = std::get<max_pool_step>(s);
    kernels::int8::max_pool2x2(buffer(st.in), detail::image_shape(g_.values[st.in], n), buffer(st.out));
  }

  void run_op(detail::average_op& op, const step& s, const float*, std::size_t n) {
    const auto& st = std::get<global_avg_pool_step>(s);
    kernels::int8::global_avg_pool_params p = op.p;
    p.in.n = n;
    kernels::int8::global_avg_pool(buffer(st.in), p, buffer(st.out));
  }

  void run_op(detail::concat_op& op, const step& s, const float*, std::size_t n) {
    const auto& st = std::get<concat_step>(s);
    for (std::size_t i = 0; i < op.inputs.size(); ++i) op.inputs[i].data = buffer(st.inputs[i]);
    const value_info& y = g_.values[st.out];
    kernels::int8::concat(op.inputs, n * y.h * y.w, buffer(st.out));
  }

  using k8shape = kernels::int8::nhwc_shape;

  runtime::graph g_;
  std::size_t max_batch_;
  std::size_t chunk_ = 1;
  std::vector<detail::op> ops_;
  memory_plan plan_;
  std::size_t scratch_offset_ = 0;
  std::vector<std::uint8_t, kernels::int8::gemm_detail::aligned_allocator<std::uint8_t>> arena_;
  kernels::int8::activation_quant output_q_;
};

}  // namespace xquant::runtime
