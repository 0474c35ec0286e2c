import numpy as np
import pytest

mmrag = pytest.importorskip("mmrag", reason="the mmrag module is not built (run through `meson test --suite python`)")


@pytest.fixture
def rng():
    return np.random.default_rng(7)
