"""What only a GPU can check: CUDA streams, bf16 fused products, the methods and the pipeline on
the device. Skipped without one; benchmarks/gpu_check.py runs them (`pytest -m cuda`)."""
import pytest
import torch

from conftest import load_tiny, logits
from yopo.adapters import get_adapter
from yopo.methods.base import PruneContext
from yopo.methods.prunenet.method import PruneNet
from yopo.methods.prunenet.reference import PruneNetReference
from yopo.modeling.fused_mlp import fuse_gate_up
from yopo.methods.prunenet.spectrum import symmetric_eigenvalues

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")]


def test_eigenvalues_on_cuda_streams_equal_eigvalsh():
    a = torch.randn(9, 200, 200, device="cuda", dtype=torch.float64,
                    generator=torch.Generator("cuda").manual_seed(0))
    sym = a + a.mT
    expected = torch.stack([torch.linalg.eigvalsh(m) for m in sym])
    torch.testing.assert_close(symmetric_eigenvalues(sym, workers=4), expected,
                               rtol=1e-10, atol=1e-10)


def test_fused_gate_up_in_bfloat16_on_cuda_matches_unfused(token_batch):
    model, _ = load_tiny("tiny_llama")
    model = model.to("cuda", torch.bfloat16)
    ids = token_batch.cuda()
    before = logits(model, ids).float()
    fuse_gate_up(model)
    torch.testing.assert_close(logits(model, ids).float(), before, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("method", [PruneNet(episodes=2, samples_per_episode=2),
                                    PruneNetReference(episodes=2)], ids=["prunenet", "reference"])
def test_neuron_methods_on_cuda_give_valid_seeded_masks(method):
    model, _ = load_tiny("tiny_llama")
    model = model.cuda()
    adapter = get_adapter(model)
    first, _ = method.keep_indices(model, adapter, 100, PruneContext(0.375, device="cuda"))
    again, _ = method.keep_indices(model, adapter, 100, PruneContext(0.375, device="cuda"))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(idx.unique().numel() == 100 and int(idx.max()) < 160 for idx in first)


def test_pipeline_runs_on_cuda_and_measures_cuda_memory(tmp_path):
    from yopo.config import compose
    from yopo.pipeline import run

    cfg = compose(["model=tiny_llama", "method.episodes=1", "eval=none", "logger=none",
                   "device=cuda", f"paths.runs_dir={tmp_path}",
                   "eval.perplexity={seqlen:64,max_chunks:2,batch_size:1}",
                   "eval.throughput={batch_sizes:[1,4],prompt_tokens:16,decode_tokens:4,"
                   "warmup:1,repeats:1}"])
    metrics = run(cfg, tmp_path / "run")
    assert metrics["device"] == "cuda" and metrics["ppl_wikitext2"] > 1
    assert metrics["throughput"]["peak_memory_method"] == "torch.cuda.max_memory_allocated"
    assert metrics["inference"]["fused_mlps"] == 6
