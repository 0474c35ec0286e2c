#pragma once
/// @file losses.hpp
/// The contrastive family, each loss returning its value and analytic gradients.

#include "mmrag/loss/common.hpp"
#include "mmrag/loss/contrastive.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"
#include "mmrag/loss/info_nce.hpp"
#include "mmrag/loss/nce.hpp"
#include "mmrag/loss/sigmoid_pairwise.hpp"
