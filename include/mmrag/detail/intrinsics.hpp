#pragma once
/// @file detail/intrinsics.hpp
/// Includes the x86 intrinsics header with GCC's uninitialized-variable warnings off for that
/// header's text only. Not API.
///
/// GCC 12's AVX-512 header writes "undefined" registers as `__m512 __Y = __Y;`; inlined into
/// Eigen's and mmrag's kernels this trips -Wuninitialized / -Wmaybe-uninitialized on correct
/// code (GCC bug 105593, fixed in GCC 13). A diagnostic pragma is position-based, so pushing it
/// around this one include silences exactly those statements and nothing in the consumer's
/// code. It must be the first inclusion of <immintrin.h> in a translation unit: mmrag's headers
/// include this one before Eigen and xsimd. Includes nothing of mmrag.

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#elif defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
