#pragma once
/// @file search_params.hpp
/// Forwarding header (version 1 path): the search types now live in mmrag/search/types.hpp.
#include "mmrag/search/types.hpp"
