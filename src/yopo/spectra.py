"""The FFN1 singular-value spectra of a run, before and after pruning, and their figure.

PruneNet's premise is that keeping the spectrum of each layer's FFN1 matrix keeps the model.
A run saves both spectra (and the per-layer KS distance between them) to `spectra.safetensors`
whatever the method, so that every method is judged on the same footing.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import YopoError
from .io import atomic_file
from .methods.prunenet.spectrum import ks_statistic, singular_values
from .progress import progress

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

    from .adapters import FFNAdapter

SPECTRA_FILE = "spectra.safetensors"


class SpectraError(YopoError):
    """A run folder whose spectra are missing or unreadable."""


@dataclass
class Spectra:
    """dense [L, d] and pruned [L, d'] singular values (descending, float32) of each layer's
    FFN1, and ks [L] = KS(dense[l], pruned[l]). d' < d when a method shrinks the hidden size."""

    dense: torch.Tensor
    pruned: torch.Tensor
    ks: torch.Tensor


def ffn1_spectra(model: nn.Module, adapter: FFNAdapter, layer_batch: int = 8) -> torch.Tensor:
    """Singular values of every layer's FFN1 weight [m, d] -> [L, min(m, d)] float32 on CPU.

    `layer_batch` consecutive layers of equal shape at a time: a batch lets singular_values
    spread the eigen-solves over threads (one layer at a time took 15x longer on a busy 2-core
    CPU), while stacking every layer would need L*m*d*12 bytes at once (float32 copy + float64
    Gram input; 17 GB for LLaMA-2-7B). Layers spread over devices by a device map are gathered
    on the first's. With per-layer widths, a layer with fewer rows m_l than the longest
    spectrum is padded with zeros: the zero eigenvalues of its larger Gram matrix.
    """
    weights = [b.ffn1.detach() for b in adapter.blocks(model)]
    spectra = []
    bar = progress(desc="FFN1 spectra (layers)", total=len(weights))
    with torch.no_grad():
        for _, group in itertools.groupby(weights, key=lambda w: w.shape):  # consecutive, equal
            run = list(group)
            for start in range(0, len(run), layer_batch):
                chunk = run[start:start + layer_batch]
                stacked = torch.stack([w.to(chunk[0].device, torch.float32) for w in chunk])
                spectra.extend(singular_values(stacked).cpu())  # [min(m, d)] per layer
                bar.update(len(chunk))
    bar.close()
    longest = max(values.numel() for values in spectra)
    return torch.stack([torch.nn.functional.pad(values, (0, longest - values.numel()))
                        for values in spectra])


def save_spectra(run_dir: str | Path, dense: torch.Tensor, pruned: torch.Tensor) -> Spectra:
    """Write dense [L, d] and pruned [L, d'] spectra and their per-layer KS to the run folder."""
    if dense.ndim != 2 or pruned.ndim != 2 or dense.shape[0] != pruned.shape[0]:
        raise ValueError(f"spectra must be [layers, values] with equal layer counts, got "
                         f"{tuple(dense.shape)} and {tuple(pruned.shape)}")
    spectra = Spectra(dense.float().cpu().contiguous(), pruned.float().cpu().contiguous(),
                      ks_statistic(dense, pruned).float().cpu())
    with atomic_file(Path(run_dir) / SPECTRA_FILE) as tmp:
        save_file({"dense": spectra.dense, "pruned": spectra.pruned, "ks": spectra.ks}, str(tmp))
    return spectra


def load_spectra(run_dir: str | Path) -> Spectra:
    path = Path(run_dir) / SPECTRA_FILE
    if not path.exists():
        raise SpectraError(f"{path} does not exist: this run saved no spectra (runs made before "
                           "spectra were recorded); rerun it with skip_existing=false")
    try:
        tensors = load_file(str(path))
        return Spectra(tensors["dense"], tensors["pruned"], tensors["ks"])
    except (SafetensorError, KeyError, OSError) as err:
        raise SpectraError(f"{path} is unreadable ({err}); delete it and rerun the run") from err


def default_layers(num_layers: int) -> list[int]:
    """First, middle and last layer: where spectra differ most in practice."""
    return sorted({0, num_layers // 2, num_layers - 1})


def ecdf_figure(original: torch.Tensor, pruned: Mapping[str, torch.Tensor],
                layers: Sequence[int] | None = None,
                ks: Mapping[str, torch.Tensor] | None = None, title: str = "") -> Figure:
    """One panel per layer: the ECDF of the original spectrum [L, d] against each labelled
    pruned spectrum [L, d'] (e.g. one per method), KS in the legend when given."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    layers = list(default_layers(original.shape[0]) if layers is None else layers)
    fig = Figure(figsize=(4.2 * len(layers), 3.6), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, layer in zip(axes, layers):
        for label, values in {"original": original, **pruned}.items():
            x = torch.sort(values[layer].float()).values.numpy()
            legend = label
            if ks is not None and label in ks:
                legend += f" (KS {float(ks[label][layer]):.3f})"
            ax.step(x, (torch.arange(1, x.size + 1) / x.size).numpy(), where="post",
                    label=legend, linewidth=2.0 if label == "original" else 1.2)
        ax.set(title=f"layer {layer}", xlabel="singular value of FFN1", ylabel="ECDF")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
