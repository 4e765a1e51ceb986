#pragma once
// xquant version. Kept in step with project(VERSION ...) in the top-level CMakeLists.txt.

#define XQUANT_VERSION_MAJOR 0
#define XQUANT_VERSION_MINOR 1
#define XQUANT_VERSION_PATCH 0

namespace xquant {
inline constexpr int version_major = XQUANT_VERSION_MAJOR;
inline constexpr int version_minor = XQUANT_VERSION_MINOR;
inline constexpr int version_patch = XQUANT_VERSION_PATCH;
}  // namespace xquant
