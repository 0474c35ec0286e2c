"""A torch.autograd.Function wrapping mmrag.in_batch_info_nce, so a PyTorch training loop uses
mmrag's analytic gradients (docs/python.md, "PyTorch"). Exits 77 (skipped) without torch.
"""
import sys

import numpy as np

import mmrag

try:
    import torch
except ImportError:
    print("torch is not installed: skipped")
    sys.exit(77)


class InBatchInfoNCE(torch.autograd.Function):
    """CLIP / ImageBind loss of two embedding batches (B x d each) and a learnable log-temperature."""

    @staticmethod
    def forward(ctx, a, b, log_temperature):
        r = mmrag.in_batch_info_nce(a.detach().cpu().numpy(), b.detach().cpu().numpy(),
                                    temperature=float(log_temperature.exp()))
        ctx.save_for_backward(torch.from_numpy(r.grad_a), torch.from_numpy(r.grad_b),
                              torch.tensor(float(r.grad_log_temperature), dtype=a.dtype))
        return torch.tensor(float(r.value), dtype=a.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        grad_a, grad_b, grad_lt = ctx.saved_tensors
        return grad_out * grad_a, grad_out * grad_b, grad_out * grad_lt


def reference(a, b, log_temperature):
    """The same loss in plain torch (symmetric, as ImageBind: L_ab + L_ba)."""
    an = torch.nn.functional.normalize(a, dim=1)
    bn = torch.nn.functional.normalize(b, dim=1)
    s = an @ bn.T / log_temperature.exp()
    labels = torch.arange(len(a))
    return torch.nn.functional.cross_entropy(s, labels) + torch.nn.functional.cross_entropy(s.T, labels)


torch.manual_seed(0)
# 1. the Function's gradients equal torch autograd's (float64)
a = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
b = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
lt = torch.tensor(np.log(0.07), dtype=torch.float64, requires_grad=True)
InBatchInfoNCE.apply(a, b, lt).backward()
ga, gb, gl = a.grad.clone(), b.grad.clone(), lt.grad.clone()
a.grad = b.grad = lt.grad = None
reference(a, b, lt).backward()
assert torch.allclose(ga, a.grad, rtol=1e-10, atol=1e-12)
assert torch.allclose(gb, b.grad, rtol=1e-10, atol=1e-12)
assert torch.allclose(gl, lt.grad, rtol=1e-10, atol=1e-12)

# 2. a training loop: two linear heads learn to align paired "image" and "text" features
images = torch.randn(256, 32)
texts = images @ torch.randn(32, 32) + 0.1 * torch.randn(256, 32)
head_i, head_t = torch.nn.Linear(32, 16), torch.nn.Linear(32, 16)
log_t = torch.nn.Parameter(torch.tensor(np.log(0.07), dtype=torch.float32))
opt = torch.optim.Adam([*head_i.parameters(), *head_t.parameters(), log_t], lr=1e-2)
losses = []
for step in range(60):
    batch = torch.randint(0, 256, (64,))
    loss = InBatchInfoNCE.apply(head_i(images[batch]), head_t(texts[batch]), log_t)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(f"loss: first {losses[0]:.3f}, last {losses[-1]:.3f}")
assert losses[-1] < 0.5 * losses[0], "training did not reduce the loss"
print("python_torch_autograd: OK")
