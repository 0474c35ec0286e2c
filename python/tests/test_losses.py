"""Every loss: value and gradients equal torch autograd in float64 (skipped without torch), the
dtype is kept, bad input raises the C++ message."""
import numpy as np
import pytest

import mmrag

try:
    import torch
except ImportError:  # the torch comparisons skip; the dtype and error tests still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
TOL = dict(rtol=1e-10, atol=1e-12)


def t(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def norm(x):
    return x / x.norm(dim=1, keepdim=True)


@pytest.fixture
def ab(rng):
    return rng.standard_normal((9, 6)), rng.standard_normal((9, 6))


@needs_torch
@pytest.mark.parametrize("symmetric", [True, False])
def test_in_batch_info_nce(ab, symmetric):
    a, b = ab
    got = mmrag.in_batch_info_nce(a, b, temperature=0.2, symmetric=symmetric)
    ta, tb, lt = t(a), t(b), t(np.log(0.2))
    s = norm(ta) @ norm(tb).T / lt.exp()
    lab = torch.arange(9)
    ce = torch.nn.functional.cross_entropy
    v = ce(s, lab) + (ce(s.T, lab) if symmetric else 0)
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_a, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_b, tb.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_log_temperature, lt.grad.item(), **TOL)


@needs_torch
def test_sigmoid_pairwise(ab):
    a, b = ab
    got = mmrag.sigmoid_pairwise(a, b, temperature=0.3, bias=-2.0)
    ta, tb, lt, tbias = t(a), t(b), t(np.log(0.3)), t(-2.0)
    z = norm(ta) @ norm(tb).T / lt.exp() + tbias
    label = 2 * torch.eye(9, dtype=torch.float64) - 1
    v = -torch.nn.functional.logsigmoid(label * z).sum() / 9
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_a, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_b, tb.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_log_temperature, lt.grad.item(), **TOL)
    np.testing.assert_allclose(got.grad_bias, tbias.grad.item(), **TOL)


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_contrastive(ab, reduction):
    a, b = ab
    same = np.array([1, 0, 1, 0, 0, 1, 0, 1, 0])
    got = mmrag.contrastive(a, b, same, margin=4.0, reduction=reduction)
    ta, tb = t(a), t(b)
    d = (ta - tb).norm(dim=1)
    s = torch.tensor(same, dtype=torch.float64)
    l = s * d**2 + (1 - s) * torch.clamp(4.0 - d, min=0) ** 2
    v = l.mean() if reduction == "mean" else l.sum()
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_a, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_b, tb.grad.numpy(), **TOL)


@needs_torch
def test_info_nce_and_nce(rng):
    s = rng.standard_normal((5, 7))
    pos = np.array([0, 3, 6, 1, 1])
    got = mmrag.info_nce(s, pos)
    ts = t(s)
    v = torch.nn.functional.cross_entropy(ts, torch.tensor(pos))
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_scores, ts.grad.numpy(), **TOL)

    x, y = rng.standard_normal(6), rng.standard_normal(11)
    got = mmrag.nce(x, y)
    tx, ty = t(x), t(y)
    ls = torch.nn.functional.logsigmoid
    v = -(ls(tx).sum() + ls(-ty).sum()) / 6
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_data, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_noise, ty.grad.numpy(), **TOL)
    np.testing.assert_allclose(mmrag.nce_logits(x, y[:6], 5.0), x - np.log(5.0) - y[:6], **TOL)


@needs_torch
@pytest.mark.skipif(not hasattr(mmrag, "supervised_contrastive"), reason="not in this build")
def test_supervised_contrastive(rng):
    x = rng.standard_normal((10, 5))
    labels = np.array([0, 1, 0, 2, 1, 0, 3, 2, 1, 1])
    got = mmrag.supervised_contrastive(x, labels, temperature=0.5)
    tx, lt = t(x), t(np.log(0.5))
    z = norm(tx) @ norm(tx).T / lt.exp()
    eye = torch.eye(10, dtype=torch.bool)
    lse = torch.logsumexp(z.masked_fill(eye, -float("inf")), dim=1)
    lab = torch.tensor(labels)
    pos = (lab[:, None] == lab[None, :]) & ~eye
    counted = pos.sum(1) > 0
    li = -((z - lse[:, None]) * pos).sum(1)[counted] / pos.sum(1)[counted]
    v = li.mean()
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_log_temperature, lt.grad.item(), **TOL)


@needs_torch
@pytest.mark.skipif(not hasattr(mmrag, "multi_positive_info_nce"), reason="not in this build")
def test_multi_positive_info_nce(rng):
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((8, 4))
    la, lb = np.array([0, 1, 2, 0, 5, 1]), np.array([0, 0, 1, 2, 3, 1, 2, 0])
    got = mmrag.multi_positive_info_nce(a, b, la, lb, temperature=0.3)
    ta, tb, lt = t(a), t(b), t(np.log(0.3))
    z = norm(ta) @ norm(tb).T / lt.exp()
    P = torch.tensor(la)[:, None] == torch.tensor(lb)[None, :]

    def side(z, P):
        lse = torch.logsumexp(z, dim=1)
        cnt = P.sum(1)
        keep = cnt > 0
        return (-((z - lse[:, None]) * P).sum(1)[keep] / cnt[keep]).mean()

    v = side(z, P) + side(z.T, P.T)
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_a, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_b, tb.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_log_temperature, lt.grad.item(), **TOL)


@needs_torch
@pytest.mark.skipif(not hasattr(mmrag, "triplet_margin"), reason="not in this build")
def test_triplet_margin(rng):
    a, p, n = (rng.standard_normal((7, 5)) for _ in range(3))
    got = mmrag.triplet_margin(a, p, n, margin=1.0)
    ta, tp, tn = t(a), t(p), t(n)
    v = torch.clamp((ta - tp).norm(dim=1) - (ta - tn).norm(dim=1) + 1.0, min=0).mean()
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_anchor, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_positive, tp.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_negative, tn.grad.numpy(), **TOL)


@needs_torch
@pytest.mark.skipif(not hasattr(mmrag, "max_hinge"), reason="not in this build")
def test_max_hinge(ab):
    a, b = ab
    got = mmrag.max_hinge(a, b, margin=0.3)
    ta, tb = t(a), t(b)
    s = norm(ta) @ norm(tb).T
    diag = s.diagonal()
    off = torch.eye(9, dtype=torch.bool)
    h1 = torch.clamp(0.3 + s - diag[:, None], min=0).masked_fill(off, -1).max(1).values
    h2 = torch.clamp(0.3 + s.T - diag[:, None], min=0).masked_fill(off, -1).max(1).values
    v = (h1 + h2).mean()
    v.backward()
    np.testing.assert_allclose(got.value, v.item(), **TOL)
    np.testing.assert_allclose(got.grad_a, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(got.grad_b, tb.grad.numpy(), **TOL)


def test_dtype_kept_and_float32_close(ab):
    a, b = ab
    r64 = mmrag.in_batch_info_nce(a, b)
    r32 = mmrag.in_batch_info_nce(a.astype(np.float32), b.astype(np.float32))
    assert r32.grad_a.dtype == np.float32 and isinstance(r32.value, np.float32)
    assert r64.grad_a.dtype == np.float64 and isinstance(r64.value, np.float64)
    np.testing.assert_allclose(r32.value, r64.value, rtol=1e-5)
    np.testing.assert_allclose(r32.grad_a, r64.grad_a, rtol=1e-3, atol=1e-5)
    value, grad_a, grad_b, *_ = r64  # a namedtuple: unpacks too
    assert grad_a.shape == a.shape


def test_loss_errors(ab):
    a, b = ab
    with pytest.raises(ValueError, match="mmrag::loss::in_batch_info_nce"):
        mmrag.in_batch_info_nce(a, b[:4])
    with pytest.raises(ValueError, match="temperature"):
        mmrag.in_batch_info_nce(a, b, temperature=0.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        mmrag.in_batch_info_nce(a.astype(np.int32), b)
    with pytest.raises(ValueError, match="reduction"):
        mmrag.contrastive(a, b, np.zeros(9, int), reduction="max")
    with pytest.raises(ValueError, match="mmrag::loss::contrastive"):
        mmrag.contrastive(a, b, np.full(9, 2))
    with pytest.raises(ValueError, match="2-D"):
        mmrag.sigmoid_pairwise(a[0], b[0])
