#pragma once
// Activation memory planning: every value of the int8 graph gets an offset in one arena,
// decided once at conversion, so inference allocates nothing.
//
// A value is live from the step that writes it to the last step that reads it (the graph
// output to the end). Values are placed largest first, each at the lowest offset that does
// not overlap a placed value whose lifetime intersects its own (greedy by size, as
// TFLite's arena planner does); a flattened value shares its source's bytes. The arena size
// is the peak activation memory reported for a model.

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <variant>
#include <vector>

#include "xquant/runtime/graph_types.hpp"

namespace xquant::runtime {

struct memory_plan {
  std::vector<std::size_t> offset;  ///< per value, bytes from the arena start (per batch)
  std::size_t arena_bytes = 0;      ///< bytes for all values at once at this batch size
};

namespace detail {

inline constexpr std::size_t arena_alignment = 64;

inline std::size_t align_up(std::size_t n) { return (n + arena_alignment - 1) / arena_alignment * arena_alignment; }

/// The values a step reads and the one it writes.
inline void step_io(const step& s, std::vector<std::size_t>& reads, std::size_t& writes) {
  reads.clear();
  std::visit(
      [&](const auto& st) {
        using T = std::decay_t<decltype(st)>;
        if constexpr (std::is_same_v<T, quantize_step>) {
          writes = st.out;
        } else if constexpr (std::is_same_v<T, add_step>) {
          reads = {st.a, st.b};
          writes = st.out;
        } else if constexpr (std::is_same_v<T, concat_step>) {
          reads = st.inputs;
          writes = st.out;
        } else {
          reads = {st.in};
          writes = st.out;
        }
      },
      s);
}

/// The value whose buffer v uses (itself unless it is a flattened view).
inline std::size_t storage_root(const graph& g, std::size_t v) {
  return g.values[v].storage_of == value_info::npos ? v : g.values[v].storage_of;
}

}  // namespace detail

/// Plans the arena for batches of up to `batch` images.
inline memory_plan plan_memory(const graph& g, std::size_t batch) {
  const std::size_t n = g.values.size();
  std::vector<std::size_t> first(n, g.steps.size()), last(n, 0);
  std::vector<std::size_t> reads;
  std::size_t writes = 0;
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    detail::step_io(g.steps[i], reads, writes);
    const std::size_t w = detail::storage_root(g, writes);
    first[w] = std::min(first[w], i);
    last[w] = std::max(last[w], i);
    for (std::size_t r : reads) last[detail::storage_root(g, r)] = std::max(last[detail::storage_root(g, r)], i);
  }
  last[detail::storage_root(g, g.output)] = g.steps.size();

  std::vector<std::size_t> order;
  for (std::size_t v = 0; v < n; ++v)
    if (detail::storage_root(g, v) == v && first[v] < g.steps.size()) order.push_back(v);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return g.values[a].bytes() > g.values[b].bytes(); });

  memory_plan plan;
  plan.offset.assign(n, 0);
  std::vector<std::size_t> placed;
  for (std::size_t v : order) {
    const std::size_t size = detail::align_up(g.values[v].bytes() * batch);
    // Candidate offsets: 0 and the end of every placed value alive at the same time.
    std::vector<std::pair<std::size_t, std::size_t>> busy;
    for (std::size_t p : placed) {
      if (first[p] <= last[v] && first[v] <= last[p]) {
        busy.push_back({plan.offset[p], plan.offset[p] + detail::align_up(g.values[p].bytes() * batch)});
      }
    }
    std::sort(busy.begin(), busy.end());
    std::size_t at = 0;
    for (const auto& [lo, hi] : busy) {
      if (at + size <= lo) break;
      at = std::max(at, hi);
    }
    plan.offset[v] = at;
    plan.arena_bytes = std::max(plan.arena_bytes, at + size);
    placed.push_back(v);
  }
  for (std::size_t v = 0; v < n; ++v) plan.offset[v] = plan.offset[detail::storage_root(g, v)];
  return plan;
}

}  // namespace xquant::runtime
