#pragma once
/// @file losses.hpp
/// The contrastive family, each loss returning its value and analytic gradients.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include "mmrag/loss/batch_softmax.hpp"
#include "mmrag/loss/common.hpp"
#include "mmrag/loss/contrastive.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"
#include "mmrag/loss/info_nce.hpp"
#include "mmrag/loss/max_hinge.hpp"
#include "mmrag/loss/multi_positive_info_nce.hpp"
#include "mmrag/loss/nce.hpp"
#include "mmrag/loss/sigmoid_pairwise.hpp"
#include "mmrag/loss/supervised_contrastive.hpp"
#include "mmrag/loss/triplet_margin.hpp"
