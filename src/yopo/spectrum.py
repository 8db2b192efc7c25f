"""Singular-value spectra and the two-sample Kolmogorov-Smirnov statistic, in torch."""
from __future__ import annotations

import torch

from .errors import ConfigError


def singular_values(weight: torch.Tensor, method: str = "gram") -> torch.Tensor:
    """Singular values of `weight` [..., r, c], descending, shape [..., min(r, c)].

    "gram": square roots of the eigenvalues of the smaller Gram matrix, in float64. One
            eigvalsh of a [min, min] matrix is several times cheaper than an SVD of the full
            matrix, and float64 keeps the small singular values accurate despite the squaring.
    "svd":  torch.linalg.svdvals, the straightforward reference.
    Leading dimensions batch over layers of equal shape.
    """
    if method == "svd":
        return torch.linalg.svdvals(weight.float())
    if method != "gram":
        raise ConfigError(f"unknown singular-value method '{method}' (use 'gram' or 'svd')")
    w = weight.double()
    gram = w.mT @ w if w.shape[-2] >= w.shape[-1] else w @ w.mT  # [..., min, min]
    eig = torch.linalg.eigvalsh(gram).clamp_min(0.0)  # ascending
    return eig.flip(-1).sqrt().to(weight.dtype if weight.is_floating_point() else torch.float32)


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
