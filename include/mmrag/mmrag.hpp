#pragma once
/// @file mmrag.hpp
/// The umbrella header: includes every public part of mmrag in dependency order.
///
/// User macros (define before including):
/// - MMRAG_ASSERT(cond): internal invariant check, defaults to `assert`.
///
/// SIMD width is chosen by *your* compile flags: build with -march=native (or
/// -march=x86-64-v3 for portable AVX2 binaries); with no flag the kernels use SSE2.

// In dependency order, bottom up: core types; similarity; the losses (above similarity, never
// search); io; the search layer (types, codecs, store, driver, then the indexes; never the
// losses); the multimodal layer (above search and the losses).
#include "mmrag/config.hpp"
#include "mmrag/similarity.hpp"
#include "mmrag/losses.hpp"
#include "mmrag/io.hpp"
#include "mmrag/search/types.hpp"
#include "mmrag/codecs.hpp"
#include "mmrag/store.hpp"
#include "mmrag/kmeans.hpp"
#include "mmrag/search/driver.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/hnsw_index.hpp"
#include "mmrag/ivf_pq_index.hpp"
#include "mmrag/multimodal.hpp"
