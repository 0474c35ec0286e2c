"""A FAISS user's code moved to mmrag line by line (docs/python.md, "Coming from FAISS").

Run by `meson test --suite python` with the module from the build directory. When FAISS is
installed the two versions run side by side and must agree; otherwise the mmrag half runs alone.
"""
import tempfile
from pathlib import Path

import numpy as np

import mmrag

try:
    import faiss
except ImportError:
    faiss = None

d, nb, nq, k = 64, 20000, 100, 10
rng = np.random.default_rng(1234)
centers = rng.random((200, d), dtype=np.float32)            # clustered, as real embeddings are
xb = centers[rng.integers(0, 200, nb)] + 0.05 * rng.standard_normal((nb, d), dtype=np.float32)
xq = centers[rng.integers(0, 200, nq)] + 0.05 * rng.standard_normal((nq, d), dtype=np.float32)
tmp = Path(tempfile.mkdtemp())

# ---- exact search ----------------------------------------------------------------------------
index = mmrag.FlatIndex(d, "l2")                   # faiss.IndexFlatL2(d)
index.add(xb)                                      # index.add(xb)
D, I = index.search(xq, k)                         # D, I = index.search(xq, k)
print("flat:", index, "first ids", I[0, :4])

if faiss is not None:
    ref = faiss.IndexFlatL2(d)
    ref.add(xb)
    D_ref, I_ref = ref.search(xq, k)
    # FAISS computes distances through ||x||² + ||q||² - 2 x·q in float32, mmrag proves its
    # top-k exactly: near-ties may swap places, the distances agree to float32 rounding
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(I, I_ref)])
    assert overlap > 0.99, f"FlatIndex and IndexFlatL2 disagree: overlap {overlap}"
    assert np.allclose(D, D_ref, rtol=1e-3, atol=1e-3)

# ---- IVF ---------------------------------------------------------------------------------------
nlist = 100
ivf = mmrag.IvfIndex(d, nlist, "l2")               # faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
ivf.train(xb)                                      # index.train(xb)
ivf.add(xb)                                        # index.add(xb)
D2, I2 = ivf.search(xq, k, nprobe=10)              # index.nprobe = 10; index.search(xq, k)
recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(I2, I)])
print(f"ivf: recall@{k} at nprobe=10: {recall:.3f}")
assert recall > 0.8

# ---- cosine: FAISS normalizes by hand, mmrag has the metric ------------------------------------
cos = mmrag.FlatIndex(d, "cosine")                 # faiss.normalize_L2(xb); IndexFlatIP(d)
cos.add(xb)
S, J = cos.search(xq, k)                           # scores are cosine similarities

# ---- ids, removal, persistence ------------------------------------------------------------------
ids = np.arange(nb, dtype=np.int64) + 10**12       # faiss.IndexIDMap(...).add_with_ids(xb, ids)
tagged = mmrag.FlatIndex(d, "l2")
tagged.add(xb, ids=ids)
tagged.remove_ids(ids[:100])                       # index.remove_ids(ids[:100])
tagged.save(tmp / "index.mmrag")                   # faiss.write_index(index, path)
back = mmrag.FlatIndex.load(tmp / "index.mmrag")   # faiss.read_index(path)
assert len(back) == nb - 100
assert np.array_equal(back.search(xq, k)[1], tagged.search(xq, k)[1])
blob = back.serialize()                            # faiss.serialize_index(index) (bytes here)
assert len(mmrag.FlatIndex.parse(blob)) == nb - 100
print("python_faiss_to_mmrag: OK")
