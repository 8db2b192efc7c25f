"""Singular-value spectra, the spectra of row subsets, and the two-sample Kolmogorov-Smirnov
statistic, in torch.

`RowSubsetKS` is PruneNet's penalty, KS(svals(W), svals(W[keep])) for each layer's FFN1 matrix
W [m, d], computed (1 + samples) * layers times per training episode. Where one solve's time
goes (SmolLM2, 1075 of 1536 rows kept, d = 576, one CPU thread): the eigen-solve of the
[576, 576] Gram matrix 16 ms, the Gram product 4 ms (from the 461 dropped rows; 9 ms from the
kept ones); gathering rows and the KS are negligible. Hence the fast path:
  * the Gram of the kept rows as G_full - G_dropped when fewer rows are dropped than kept
    (ratio < 0.5): G_full is computed once per layer, an episode multiplies only dropped rows;
  * float64 Gram and eigen-solve (the Gram squares the condition number);
  * independent solves (gather, Gram, eigen-solve) spread over single-threaded workers (see
    parallel_map), a layer batch at a time; each worker holds one solve, so extra memory is a
    few layers' worth whatever the depth;
  * no [S, L, k, d] gather of kept rows: each solve reads its rows from the layer's weight.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from ...errors import ConfigError

SPECTRUM_METHODS = ("gram", "svd")
#: concurrent eigen-solves on a GPU (one CUDA stream each) when not configured; not tuned:
#: no GPU was at hand when this was written.
CUDA_EIGEN_STREAMS = 4
T = TypeVar("T")


def check_spectrum_method(method: str) -> str:
    if method not in SPECTRUM_METHODS:
        raise ConfigError(f"unknown singular-value method '{method}' (use 'gram' or 'svd')")
    return method


def default_workers(device: torch.device | str) -> int:
    """Parallel solves when not configured: CUDA_EIGEN_STREAMS on a GPU, else torch's threads."""
    return CUDA_EIGEN_STREAMS if torch.device(device).type == "cuda" else torch.get_num_threads()


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch (and its BLAS/LAPACK) on one intra-op thread inside the block."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def parallel_map(fn: Callable[[T], torch.Tensor], items: Sequence[T],
                 device: torch.device | str, workers: int | None = None) -> list[torch.Tensor]:
    """[fn(item) for item in items], the items split into `workers` contiguous groups that run
    at once, each in its own thread.

    CPU: every worker runs torch single-threaded. torch.linalg.eigvalsh (and every op) on
    several intra-op threads synchronises them all the time; on cores shared with other work a
    thread that is descheduled stalls the rest, which made an eigen-solve of n=576 15-30x
    slower than one thread (0.7-1.4 s against 0.047 s at a load of 9 on 2 cores). Independent
    problems on single-threaded workers never wait for each other, and are as fast on a quiet
    machine.
    CUDA: every worker queues its work on its own stream, so that latency-bound solves
    (cuSOLVER's eigen-solver blocks its calling thread) overlap.
    Default workers: default_workers(device).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    workers = default_workers(device) if workers is None else workers
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    bounds = [len(items) * w // workers for w in range(workers + 1)]
    groups = [items[a:b] for a, b in zip(bounds, bounds[1:])]
    if not cuda:
        with single_threaded_torch(), ThreadPoolExecutor(workers) as pool:
            return [out for group in pool.map(lambda g: [fn(x) for x in g], groups)
                    for out in group]
    main = torch.cuda.current_stream(device)
    streams = [torch.cuda.Stream(device) for _ in groups]

    def run(group: Sequence[T], stream: torch.cuda.Stream) -> list[torch.Tensor]:
        with torch.cuda.device(device), torch.cuda.stream(stream):
            stream.wait_stream(main)  # inputs were written on the main stream
            return [fn(x) for x in group]

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(run, groups, streams))
    for outs, stream in zip(results, streams):
        main.wait_stream(stream)
        for out in outs:
            out.record_stream(main)  # allocated on `stream`, read and freed on the main stream
    return [out for outs in results for out in outs]


def symmetric_eigenvalues(matrices: torch.Tensor, workers: int | None = None) -> torch.Tensor:
    """Eigenvalues, ascending, of symmetric matrices [..., n, n] -> [..., n]: those of
    torch.linalg.eigvalsh, the batch spread over parallel workers (see parallel_map)."""
    flat = matrices.reshape(-1, *matrices.shape[-2:])
    parts = parallel_map(torch.linalg.eigvalsh, flat.split(1), flat.device, workers)
    return torch.cat(parts).reshape(matrices.shape[:-1])


def gram_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix of weight [..., r, c] in float64: [..., min(r, c), min(r, c)]."""
    w = weight.double()
    return w.mT @ w if w.shape[-2] >= w.shape[-1] else w @ w.mT


def gram_singular_values(gram: torch.Tensor, count: int | None = None,
                         workers: int | None = None) -> torch.Tensor:
    """Singular values, descending, from a Gram matrix [..., n, n]: the square roots of its
    `count` (default n) largest eigenvalues; [..., count]."""
    eig = symmetric_eigenvalues(gram, workers).clamp_min(0.0).flip(-1)
    return eig[..., :count].sqrt()


def singular_values(weight: torch.Tensor, method: str = "gram") -> torch.Tensor:
    """Singular values of `weight` [..., r, c], descending, shape [..., min(r, c)].

    "gram": square roots of the eigenvalues of the smaller Gram matrix, in float64: one
            eigvalsh of a [min, min] matrix instead of an SVD of the full matrix, and float64
            keeps the small singular values accurate despite the squaring.
    "svd":  torch.linalg.svdvals in float32, the straightforward reference.
    Leading dimensions batch over layers of equal shape.
    """
    if check_spectrum_method(method) == "svd":
        return torch.linalg.svdvals(weight.float())
    values = gram_singular_values(gram_matrix(weight))
    return values.to(weight.dtype if weight.is_floating_point() else torch.float32)


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Two-sample KS statistic sup_x |F_a(x) - F_b(x)| of samples a [..., n] and b [..., k].

    Equals scipy.stats.ks_2samp(a, b).statistic, batched over the leading dimensions (one
    statistic per layer). Both ECDFs are evaluated at every pooled sample point, where the
    supremum is attained, with searchsorted(right=True).
    """
    a = torch.sort(a.double(), dim=-1).values
    b = torch.sort(b.double(), dim=-1).values
    pooled = torch.cat([a, b], dim=-1).contiguous()
    cdf_a = torch.searchsorted(a.contiguous(), pooled, right=True).double() / a.shape[-1]
    cdf_b = torch.searchsorted(b.contiguous(), pooled, right=True).double() / b.shape[-1]
    return (cdf_a - cdf_b).abs().amax(dim=-1)


def layer_batches(num_layers: int, layer_batch: int) -> list[range]:
    """Consecutive layer index ranges of at most layer_batch layers."""
    return [range(start, min(start + layer_batch, num_layers))
            for start in range(0, num_layers, layer_batch)]


class RowSubsetKS:
    """KS(svals(W_l), svals(W_l[keep])) for layers W_l [m, d] of one shape, keeping k rows.

    layers: the matrices, any float dtype and device (e.g. views of a model's weights); they
            are read, never copied whole except layer_batch layers at setup.
    method: "gram" (fast, float64) or "svd" (gather the kept rows, svdvals in float32: the
            straightforward reference, run serially). Their KS are equal unless float32
            rounding in the reference swaps a kept and a dense singular value (a 1/d step).
    layer_batch: layers whose keep sets are solved in one parallel call.
    workers: parallel solves (see parallel_map); extra memory is about
            workers * (rows * d + d * d) * 8 bytes, a few layers' worth.

    With method "gram", k >= d and fewer dropped than kept rows, each layer's full Gram
    G = W^T W (float64 [d, d]) is kept in host memory (L * d * d * 8 bytes: 80 MB for SmolLM2,
    4.3 GB for LLaMA-2-7B, pinned when computing on a GPU) and the kept rows' Gram is
    G - D^T D over the m - k dropped rows D: at ratio 0.3 under half the multiplications.
    """

    def __init__(self, layers: Sequence[torch.Tensor], keep_count: int, method: str = "gram",
                 device: str | torch.device = "cpu", layer_batch: int = 4,
                 workers: int | None = None):
        if layer_batch < 1:
            raise ConfigError(f"layer_batch={layer_batch} must be a positive integer")
        shapes = {tuple(w.shape) for w in layers}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"layers must be 2-D matrices of one shape, got {sorted(shapes)}")
        self.layers, self.k = list(layers), int(keep_count)
        self.method, self.device = check_spectrum_method(method), torch.device(device)
        self.layer_batch = layer_batch
        self.workers = default_workers(device) if workers is None else workers
        self.rows, self.cols = next(iter(shapes))
        if not 0 < self.k <= self.rows:
            raise ValueError(f"cannot keep {self.k} of {self.rows} rows")
        self.subtract_dropped = (method == "gram" and self.cols <= self.k
                                 and self.rows - self.k < self.k)
        self.full_grams: list[torch.Tensor] = []
        dense = []
        for batch in layer_batches(len(self.layers), layer_batch):
            weights = torch.stack([self._layer(i) for i in batch])  # [B, m, d]
            if method == "svd":
                dense.append(torch.linalg.svdvals(weights.float()))
                continue
            grams = gram_matrix(weights)  # [B, n, n], n = min(m, d)
            dense.append(gram_singular_values(grams, workers=self.workers))
            if self.subtract_dropped:  # n = d here since m > k >= d
                pin = self.device.type == "cuda"
                self.full_grams += [g.to("cpu").pin_memory() if pin else g.to("cpu")
                                    for g in grams]
        self.dense = torch.cat(dense)  # [L, min(m, d)], descending

    def _layer(self, i: int) -> torch.Tensor:
        return self.layers[i].detach().to(self.device)

    def _subset_singular_values(self, job: tuple[int, torch.Tensor]) -> torch.Tensor:
        """Singular values [min(k, d)], descending, of W_layer[keep] for job = (layer, keep [k])."""
        layer, keep = job
        weight = self._layer(layer)
        if self.method == "svd":
            return torch.linalg.svdvals(weight[keep].float())
        if self.subtract_dropped:
            dropped = torch.ones(self.rows, dtype=torch.bool, device=self.device)
            dropped[keep] = False
            rows = weight[dropped].double()  # [m - k, d]
            full = self.full_grams[layer].to(self.device, non_blocking=True)
            gram = torch.addmm(full, rows.mT, rows, alpha=-1.0)  # G - D^T D
        else:
            gram = gram_matrix(weight[keep])
        return gram_singular_values(gram, min(self.k, self.cols), workers=1)

    @torch.no_grad()
    def __call__(self, keep: torch.Tensor) -> torch.Tensor:
        """keep [E, L, k] row indices (distinct within a layer) -> KS [E, L] float64."""
        if keep.ndim != 3 or keep.shape[1:] != (len(self.layers), self.k):
            raise ValueError(f"keep must be [subsets, {len(self.layers)}, {self.k}], "
                             f"got {tuple(keep.shape)}")
        keep = keep.to(self.device)
        subsets, out = keep.shape[0], []
        for batch in layer_batches(len(self.layers), self.layer_batch):
            jobs = [(i, keep[e, i]) for i in batch for e in range(subsets)]
            svals = parallel_map(self._subset_singular_values, jobs, self.device,
                                 1 if self.method == "svd" else self.workers)
            svals = torch.stack(svals).view(len(batch), subsets, -1).transpose(0, 1)
            dense = self.dense[batch.start:batch.stop].to(self.device)
            out.append(ks_statistic(dense.expand(subsets, -1, -1), svals))  # [E, B]
        return torch.cat(out, dim=1)
