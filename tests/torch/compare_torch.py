"""Cross-checks mmrag's losses against PyTorch autograd on random cases (float64).

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


def torch_loss(name, a, b, opt):
    if name in ("in_batch_info_nce", "sigmoid_pairwise"):
        log_tau = torch.tensor(np.log(opt["tau"]), requires_grad=True)
        bias = torch.tensor(opt.get("bias", 0.0), requires_grad=True)
        x, y = (F.normalize(a, dim=1), F.normalize(b, dim=1)) if opt["normalize"] else (a, b)
        z = x @ y.T / torch.exp(log_tau)
        n = a.shape[0]
        if name == "in_batch_info_nce":
            labels = torch.arange(n)
            red = "sum" if opt.get("sum") else "mean"
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


def run_case(name, a_np, b_np, opt):
    global failures, cases
    cases += 1
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        np.save(d / "a.npy", a_np)
        np.save(d / "b.npy", b_np)
        (d / "case.txt").write_text(name + " " + " ".join(f"{k}={float(v)}" for k, v in opt.items()))
        subprocess.run([cli, str(d)], check=True)
        got = {k: np.load(d / f"out_{k}.npy") for k in ("value", "grad_a", "grad_b", "grad_log_tau", "grad_bias")}
    a = torch.tensor(a_np, requires_grad=True)
    b = torch.tensor(b_np, requires_grad=name != "info_nce")
    value, extra = torch_loss(name, a, b, opt)
    wrt = [a] + ([b] if b.requires_grad else []) + extra
    grads = torch.autograd.grad(value, wrt, allow_unused=True)
    expect = {"value": value.detach().numpy().reshape(1, 1), "grad_a": grads[0].numpy()}
    if b.requires_grad:
        expect["grad_b"] = grads[1].numpy().reshape(got["grad_b"].shape)
    if extra:
        expect["grad_log_tau"] = grads[-2].numpy().reshape(1, 1)
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
    s = rng.normal(size=(n, d + 1)) * 3
    run_case("info_nce", s, rng.integers(0, d + 1, size=(n, 1)).astype(np.float64), {"sum": trial % 2})
    run_case("nce", rng.normal(size=(n, 1)) * 2, rng.normal(size=(int(rng.integers(1, 6)), 1)) * 2, {})
print(f"{cases} cases compared with torch {torch.__version__}: {failures} mismatches")
sys.exit(1 if failures else 0)
