"""PruneNet (ICLR 2025, "You Only Prune Once"): the paper's description (`method`, PruneNet)
and the authors' algorithm (`reference`, PruneNetReference), with what they share: the policy
networks and their files (`policy`) and the spectral penalty, FFN1 singular values and the
Kolmogorov-Smirnov distance (`spectrum`).

conf/method/prunenet*.yaml build them as `yopo.methods.prunenet.<class>`."""
from .method import PruneNet
from .reference import PruneNetReference

__all__ = ["PruneNet", "PruneNetReference"]
