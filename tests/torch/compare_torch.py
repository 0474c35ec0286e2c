"""Cross-checks mmrag's losses against PyTorch autograd on random cases (float64): contrastive,
nce, info_nce, in_batch_info_nce (coupled and decoupled), sigmoid_pairwise,
multi_positive_info_nce, supervised_contrastive, max_hinge and triplet_margin, each written here
from its definition in DESIGN.md with torch ops (no mmrag code).

    compare_torch.py LOSS_CLI

Each case is written as .npy files, evaluated by LOSS_CLI (tests/torch/loss_cli.cpp), and
compared with the same definition written in torch and differentiated by autograd.
Tolerance: 1e-9 relative. Exits 77 (skipped, for meson) when torch or numpy is missing.
"""
import pathlib
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # not installed: skip, don't fail
    print(f"skipped: {e}")
    sys.exit(77)

torch.set_default_dtype(torch.float64)
cli = sys.argv[1]
rng = np.random.default_rng(2024)
failures = 0
cases = 0


def make_labels(n, classes, odd=False):
    return torch.tensor([((2 * i + 1) if odd else i) % classes for i in range(n)])


def multi_positive_direction(z, la, lb, mean, decoupled):
    pos = (la[:, None] == lb[None, :]).to(z.dtype)
    masked = z.masked_fill(pos.bool(), float("-inf")) if decoupled else z
    lse = torch.logsumexp(masked, dim=1)
    npos = pos.sum(1)
    keep = (npos > 0) & torch.isfinite(lse)
    per = -((z - lse[:, None]) * pos).sum(1)[keep] / npos[keep]
    if per.numel() == 0:
        return z.sum() * 0
    return per.mean() if mean else per.sum()


def torch_loss(name, a, b, opt, c=None):
    if name in ("multi_positive_info_nce", "supervised_contrastive"):
        log_tau = torch.tensor(np.log(opt["tau"]), requires_grad=True)
        k = int(opt["classes"])
        mean = not opt.get("sum")
        if name == "supervised_contrastive":
            x = F.normalize(a, dim=1) if opt["normalize"] else a
            z = x @ x.T / torch.exp(log_tau)
            n = a.shape[0]
            la = make_labels(n, k)
            eye = torch.eye(n, dtype=torch.bool)
            pos = (la[:, None] == la[None, :]) & ~eye
            lse = torch.logsumexp(z.masked_fill(eye, float("-inf")), dim=1)
            npos = pos.sum(1)
            keep = npos > 0
            per = -((z - lse[:, None]) * pos).sum(1)[keep] / npos[keep]
            value = (per.mean() if mean else per.sum()) if per.numel() else z.sum() * 0
            return value, [log_tau]
        x, y = (F.normalize(a, dim=1), F.normalize(b, dim=1)) if opt["normalize"] else (a, b)
        z = x @ y.T / torch.exp(log_tau)
        la, lb = make_labels(a.shape[0], k), make_labels(b.shape[0], k, odd=True)
        dec = bool(opt.get("decoupled"))
        value = multi_positive_direction(z, la, lb, mean, dec)
        if opt["symmetric"]:
            value = value + multi_positive_direction(z.T, lb, la, mean, dec)
        return value, [log_tau]
    if name == "max_hinge":
        x, y = (F.normalize(a, dim=1), F.normalize(b, dim=1)) if opt["normalize"] else (a, b)
        s = x @ y.T
        n = a.shape[0]
        d = torch.diagonal(s)
        off = torch.eye(n, dtype=torch.bool)
        hr = (opt["margin"] + s - d[:, None]).clamp(min=0).masked_fill(off, 0)
        hc = (opt["margin"] + s - d[None, :]).clamp(min=0).masked_fill(off, 0)
        per = hr.max(dim=1).values + hc.max(dim=0).values
        return (per.sum() if opt.get("sum") else per.mean()), []
    if name == "triplet_margin":
        dp = torch.sqrt(((a - b) ** 2).sum(1))
        dn = torch.sqrt(((a - c) ** 2).sum(1))
        per = torch.clamp(dp - dn + opt["margin"], min=0)
        return (per.sum() if opt.get("sum") else per.mean()), []

    if name in ("in_batch_info_nce", "sigmoid_pairwise"):
        log_tau = torch.tensor(np.log(opt["tau"]), requires_grad=True)
        bias = torch.tensor(opt.get("bias", 0.0), requires_grad=True)
        x, y = (F.normalize(a, dim=1), F.normalize(b, dim=1)) if opt["normalize"] else (a, b)
        z = x @ y.T / torch.exp(log_tau)
        n = a.shape[0]
        if name == "in_batch_info_nce":
            labels = torch.arange(n)
            red = "sum" if opt.get("sum") else "mean"
            if opt.get("decoupled"):  # DCL: the positive leaves the denominator
                eye = torch.eye(n, dtype=torch.bool)
                d = torch.diagonal(z)
                per_r = torch.logsumexp(z.masked_fill(eye, float("-inf")), dim=1) - d
                per_c = torch.logsumexp(z.masked_fill(eye, float("-inf")), dim=0) - d
                if n == 1:
                    per_r = per_c = z.sum(1) * 0
                value = per_r.sum() if red == "sum" else per_r.mean()
                if opt["symmetric"]:
                    value = value + (per_c.sum() if red == "sum" else per_c.mean())
                return value, [log_tau, bias]
            value = F.cross_entropy(z, labels, reduction=red)
            if opt["symmetric"]:
                value = value + F.cross_entropy(z.T, labels, reduction=red)
        else:
            zz = z + bias
            labels = 2 * torch.eye(n) - 1
            value = -F.logsigmoid(labels * zz).sum() / n
        return value, [log_tau, bias]
    if name == "contrastive":
        same = torch.tensor([i % 2 for i in range(a.shape[0])], dtype=torch.float64)
        d = torch.sqrt(((a - b) ** 2).sum(1))
        l = same * d ** 2 + (1 - same) * torch.clamp(opt["margin"] - d, min=0) ** 2
        return (l.sum() if opt.get("sum") else l.mean()), []
    if name == "info_nce":
        red = "sum" if opt.get("sum") else "mean"
        return F.cross_entropy(a, b[:, 0].long(), reduction=red), []
    if name == "nce":
        n = a.shape[0]
        return -(F.logsigmoid(a).sum() + F.logsigmoid(-b).sum()) / n, []
    raise ValueError(name)


def run_case(name, a_np, b_np, opt, c_np=None):
    global failures, cases
    cases += 1
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        np.save(d / "a.npy", a_np)
        np.save(d / "b.npy", b_np)
        if c_np is not None:
            np.save(d / "c.npy", c_np)
        (d / "case.txt").write_text(name + " " + " ".join(f"{k}={float(v)}" for k, v in opt.items()))
        subprocess.run([cli, str(d)], check=True)
        keys = ("value", "grad_a", "grad_b", "grad_log_tau", "grad_bias") + (("grad_c",) if c_np is not None else ())
        got = {k: np.load(d / f"out_{k}.npy") for k in keys}
    a = torch.tensor(a_np, requires_grad=True)
    b = torch.tensor(b_np, requires_grad=name not in ("info_nce", "supervised_contrastive"))
    c = torch.tensor(c_np, requires_grad=True) if c_np is not None else None
    value, extra = torch_loss(name, a, b, opt, c)
    wrt = [a] + ([b] if b.requires_grad else []) + ([c] if c is not None else []) + extra
    grads = torch.autograd.grad(value, wrt, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt)]
    expect = {"value": value.detach().numpy().reshape(1, 1), "grad_a": grads[0].numpy()}
    if b.requires_grad:
        expect["grad_b"] = grads[1].numpy().reshape(got["grad_b"].shape)
    if c is not None:
        expect["grad_c"] = grads[2].numpy()
    if extra:
        if name in ("in_batch_info_nce", "sigmoid_pairwise"):
            expect["grad_log_tau"] = grads[-2].numpy().reshape(1, 1)
        else:
            expect["grad_log_tau"] = grads[-1].numpy().reshape(1, 1)
        if name == "sigmoid_pairwise":
            expect["grad_bias"] = grads[-1].numpy().reshape(1, 1)
    for k, e in expect.items():
        g = got[k].reshape(e.shape)
        err = np.max(np.abs(g - e)) / max(1.0, np.max(np.abs(e)))
        if not err < 1e-9:
            failures += 1
            print(f"FAIL {name} {opt} {k}: relative error {err:.3g}")


for trial in range(6):
    n, d = int(rng.integers(1, 9)), int(rng.integers(1, 7))
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    for normalize in (0, 1):
        for symmetric in (0, 1):
            run_case("in_batch_info_nce", a, b, {"tau": float(rng.uniform(0.05, 1.0)), "normalize": normalize,
                                                 "symmetric": symmetric, "sum": trial % 2})
        run_case("sigmoid_pairwise", a, b, {"tau": float(rng.uniform(0.05, 1.0)), "bias": float(rng.normal() * 3),
                                            "normalize": normalize})
    run_case("contrastive", a, b, {"margin": float(rng.uniform(0.5, 3.0)), "sum": trial % 2})
    for normalize in (0, 1):
        tau = float(rng.uniform(0.05, 1.0)) * (1 if normalize else 4)
        for symmetric in (0, 1):
            run_case("in_batch_info_nce", a, b, {"tau": tau, "normalize": normalize,
                                                 "symmetric": symmetric, "sum": trial % 2, "decoupled": 1})
            for decoupled in (0, 1):
                b2 = rng.normal(size=(int(rng.integers(1, 9)), d))
                run_case("multi_positive_info_nce", a, b2, {"tau": tau, "normalize": normalize, "symmetric": symmetric,
                                                            "sum": trial % 2, "decoupled": decoupled,
                                                            "classes": int(rng.integers(1, 4))})
        run_case("supervised_contrastive", a, b, {"tau": tau, "normalize": normalize, "sum": trial % 2,
                                                  "classes": int(rng.integers(1, 4))})
        run_case("max_hinge", a, b, {"margin": float(rng.uniform(0.0, 1.0)), "normalize": normalize,
                                     "sum": trial % 2})
    run_case("triplet_margin", a, b, {"margin": float(rng.uniform(0.0, 2.0)), "sum": trial % 2},
             rng.normal(size=(n, d)))
    s = rng.normal(size=(n, d + 1)) * 3
    run_case("info_nce", s, rng.integers(0, d + 1, size=(n, 1)).astype(np.float64), {"sum": trial % 2})
    run_case("nce", rng.normal(size=(n, 1)) * 2, rng.normal(size=(int(rng.integers(1, 6)), 1)) * 2, {})
print(f"{cases} cases compared with torch {torch.__version__}: {failures} mismatches")
sys.exit(1 if failures else 0)
