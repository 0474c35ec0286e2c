#pragma once
/// @file mmrag.hpp
/// The umbrella header: includes every public part of mmrag in dependency order.
///
/// User macros (define before including):
/// - MMRAG_ASSERT(cond): internal invariant check, defaults to `assert`.
///
/// SIMD width is chosen by *your* compile flags: build with -march=native (or
/// -march=x86-64-v3 for portable AVX2 binaries); with no flag the kernels use SSE2.

#include "mmrag/config.hpp"
#include "mmrag/similarity.hpp"
#include "mmrag/losses.hpp"
