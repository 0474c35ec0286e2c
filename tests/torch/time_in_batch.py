"""Times PyTorch's in-batch InfoNCE (CLIP/ImageBind: normalize + symmetric sum) forward +
backward at B x d float32, one thread, for comparison with bench_losses' loss/in_batch_info_nce.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tests/torch/time_in_batch.py [B] [d] [reps]

(Debian's OpenBLAS misdetects AMD EPYC with AVX-512 unless its core type is set.) Prints the
best and median wall time and CPU time per call. Not a test: exits 77 without torch.
"""
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

B = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
d = int(sys.argv[2]) if len(sys.argv) > 2 else 512
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
a0 = torch.rand(B, d, generator=g) * 2 - 1
b0 = torch.rand(B, d, generator=g) * 2 - 1
labels = torch.arange(B)
log_tau = torch.tensor(0.07).log()


def step():
    a = a0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    lt = log_tau.clone().requires_grad_(True)
    z = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / lt.exp()
    loss = F.cross_entropy(z, labels) + F.cross_entropy(z.T, labels)
    loss.backward()
    return loss.item()


step()  # warm-up
wall, cpu = [], []
for _ in range(reps):
    w0, c0 = time.perf_counter(), time.process_time()
    step()
    wall.append(time.perf_counter() - w0)
    cpu.append(time.process_time() - c0)
print(f"torch {torch.__version__} in_batch_info_nce B={B} d={d} float32 1 thread: "
      f"wall best {min(wall):.3f} s median {statistics.median(wall):.3f} s; "
      f"cpu best {min(cpu):.3f} s median {statistics.median(cpu):.3f} s")
