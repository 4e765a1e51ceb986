#pragma once
// The test program replaces the global operator new (allocation_counter.cpp) to count heap
// allocations: the zero-allocation checks of inference read this counter.

#include <cstddef>

namespace xquant_test {
/// Calls of any global operator new so far (all threads).
std::size_t allocation_count();
}  // namespace xquant_test
