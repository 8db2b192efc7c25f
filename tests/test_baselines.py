"""The baselines (random, magnitude, activation, SliceGPT) on every adapter's tiny random model:
the invariants each must keep, checked against independent computations."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM

from conftest import load_tiny, logits
from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.data import DataError
from yopo.data.wikitext import split_calibration, wikitext2_token_ids
from yopo.errors import ConfigError
from yopo.eval.throughput import ideal_speedup, linear_cost
from yopo.methods.activation import ActivationNeurons, activation_scores
from yopo.methods.base import PruneContext, kept_width
from yopo.data.calibration import Calibration
from yopo.methods.magnitude import MagnitudeNeurons
from yopo.methods.random import RandomNeurons
from yopo.methods.slicegpt import SliceGPT
from yopo.models import byte_tokenizer, count_parameters, load_model
from yopo.pipeline import run, save_checkpoint

DATA_DIR = Path(compose([]).data.dir)
HELD_OUT = 2048  # tokens of the calibration slice the tests use (tiny models, byte tokens)
CALIBRATION = {"calibration_tokens": 512, "calibration_seq_len": 128}


@pytest.fixture(scope="module")
def calibration_slice():
    """The real held-out slice for the byte tokenizer, tokenised once for the module."""
    ids = wikitext2_token_ids(byte_tokenizer(), DATA_DIR)
    return split_calibration(ids, HELD_OUT)[0]


@dataclass
class SliceContext(PruneContext):
    """A PruneContext whose calibration slice is the module's, to tokenise WikiText-2 once."""

    held_out: torch.Tensor | None = None

    def calibration_ids(self) -> torch.Tensor:
        return self.held_out


def context(calibration_slice, ratio: float, seed: int = 0) -> PruneContext:
    return SliceContext(ratio=ratio, seed=seed, calibration_tokens=HELD_OUT,
                        held_out=calibration_slice)


def methods():
    return {"random": RandomNeurons(), "magnitude": MagnitudeNeurons(),
            "activation": ActivationNeurons(**CALIBRATION), "slicegpt": SliceGPT(**CALIBRATION),
            "slicegpt_head_sliced": SliceGPT(slice_head=True, **CALIBRATION)}


# ---- every method on every family ---------------------------------------------------------------
@pytest.mark.parametrize("method_name", ["random", "magnitude", "activation", "slicegpt",
                                         "slicegpt_head_sliced"])
def test_method_prunes_every_family_and_reloads(tiny, method_name, calibration_slice, token_batch,
                                                tmp_path):
    name, model, tokenizer, adapter = tiny
    method = methods()[method_name]
    dense = count_parameters(model)
    report = method.prune(model, adapter, context(calibration_slice, 0.3))
    pruned = logits(model, token_batch)
    if method_name.startswith("slicegpt"):
        assert report["ratio_semantics"] == "hidden_dim"
        assert report["hidden_size_sliced"] == kept_width(model.config.hidden_size, 0.3)
    else:
        assert report["ratio_semantics"] == "ffn_width"
        assert adapter.ffn_width(model) == kept_width(160, 0.3)
        assert count_parameters(model) < dense
    # what the pipeline saves: SliceGPT's model is wrapped as its own architecture
    save_checkpoint(method.checkpoint_model(model), tokenizer, tmp_path / "pruned_model")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned_model",
                                                    trust_remote_code=True).eval()
    assert count_parameters(reloaded) == count_parameters(model)
    torch.testing.assert_close(logits(reloaded, token_batch), pruned, rtol=1e-5, atol=1e-5)


# ---- random --------------------------------------------------------------------------------------
def test_random_is_seeded():
    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)

    def mask(seed):
        return RandomNeurons().keep_indices(model, adapter, 100, PruneContext(0.3, seed=seed))[0]

    first, again, other = mask(0), mask(0), mask(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert all(idx.unique().numel() == 100 and idx.max() < 160 for idx in first)


# ---- magnitude -----------------------------------------------------------------------------------
def _neuron_weight_norms(name: str, model) -> list[torch.Tensor]:
    """Per layer, the L2 norm of all of a neuron's weights, written out per family."""
    if name == "tiny_llama":
        return [(l.mlp.gate_proj.weight.pow(2).sum(1) + l.mlp.up_proj.weight.pow(2).sum(1)
                 + l.mlp.down_proj.weight.pow(2).sum(0)).sqrt() for l in model.model.layers]
    layers = model.model.layers if name == "tiny_phi" else model.model.decoder.layers
    ffn = [l.mlp if name == "tiny_phi" else l for l in layers]
    return [(f.fc1.weight.pow(2).sum(1) + f.fc2.weight.pow(2).sum(0)).sqrt() for f in ffn]


def test_magnitude_keeps_exactly_the_top_norm_neurons(tiny):
    name, model, _, adapter = tiny
    expected = [set(n.topk(100).indices.tolist()) for n in _neuron_weight_norms(name, model)]
    keep, _ = MagnitudeNeurons().keep_indices(model, adapter, 100, PruneContext(0.3))
    assert [set(k.tolist()) for k in keep] == expected


# ---- activation ----------------------------------------------------------------------------------
def test_activation_scores_equal_a_direct_computation(token_batch):
    model, _ = load_tiny("tiny_llama")
    layers = model.model.layers
    sums = torch.zeros(len(layers), 160, dtype=torch.float64)  # sum over tokens of h^2

    def record(i, mlp):
        def hook(module, args):  # h = act(gate(x)) * up(x) from the MLP's own input x
            x = args[0].double()
            gate, up = mlp.gate_proj.weight.double(), mlp.up_proj.weight.double()
            h = mlp.act_fn(x @ gate.T) * (x @ up.T)
            sums[i] += h.pow(2).sum((0, 1))
        return hook

    handles = [l.mlp.register_forward_pre_hook(record(i, l.mlp)) for i, l in enumerate(layers)]
    with torch.no_grad():
        model(token_batch)
    for handle in handles:
        handle.remove()
    columns = torch.stack([layer.mlp.down_proj.weight.double().norm(dim=0) for layer in layers])
    direct = sums.sqrt() * columns
    scores = activation_scores(model, get_adapter(model), token_batch, "cpu")
    torch.testing.assert_close(scores, direct, rtol=1e-4, atol=1e-8)


# ---- SliceGPT ------------------------------------------------------------------------------------
def sliced_parameter_count(config, d: int, head: int) -> int:
    """The parameters of a model whose residual stream is sliced from D to d, derived from the
    architecture: every linear reading the stream keeps d of its D input columns, every writer
    d of its D output rows (and bias entries); norms lose their weights (folded); each branch
    gains a d x d shortcut (LLaMA/OPT: two per layer, Phi: one, attention and MLP are
    parallel); the head is untied and reads `head` (d, or D when unsliced: then the last
    branch's writers keep D rows and its shortcut is d x D); where a LayerNorm bias was folded
    into the head, it has a bias (V)."""
    v, hidden, layers = config.vocab_size, config.hidden_size, config.num_hidden_layers
    if config.model_type == "llama":
        head_dim = hidden // config.num_attention_heads
        q, kv, m = hidden, config.num_key_value_heads * head_dim, config.intermediate_size
        per_layer = d * (q + 2 * kv) + q * d + 3 * m * d + 2 * d * d
        return v * d + v * head + layers * per_layer + (head - d) * (m + d)  # last: down, S
    m = config.intermediate_size if config.model_type == "phi" else config.ffn_dim
    attention = 3 * (hidden * d + hidden) + (hidden * d + d)  # q, k, v + biases; out + bias
    mlp = (m * d + m) + (m * d + d)  # fc1 + bias, fc2 + bias
    if config.model_type == "phi":  # the last branch writes with dense and fc2
        return (v * d + v * head + v + layers * (attention + mlp + d * d)
                + (head - d) * ((hidden + 1) + (m + 1) + d))
    positions = config.max_position_embeddings + 2  # OPT's learned positions are offset by 2
    return ((v + positions) * d + v * head + v + layers * (attention + mlp + 2 * d * d)
            + (head - d) * ((m + 1) + d))


def test_slicegpt_at_ratio_zero_reproduces_the_dense_logits(tiny, calibration_slice,
                                                            token_batch):
    name, model, _, adapter = tiny
    dense, dense_params = logits(model, token_batch), count_parameters(model)
    report = SliceGPT(**CALIBRATION).prune(model, adapter, context(calibration_slice, 0.0))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())  # all folded
    sliced = logits(model, token_batch)
    assert ((sliced - dense).abs().max() / dense.abs().max()).item() < 1e-4
    hidden = model.config.hidden_size
    assert count_parameters(model) == sliced_parameter_count(model.config, hidden, hidden)
    if name == "tiny_llama":  # tied embeddings: the head gets its own rotation, the model grows
        assert report["embeddings_untied"]
        assert model.lm_head.weight is not model.model.embed_tokens.weight
        assert count_parameters(model) > dense_params


@pytest.mark.parametrize("slice_head", [False, True])
def test_slicegpt_parameter_count_follows_the_formula(tiny, slice_head, calibration_slice):
    _, model, _, adapter = tiny
    d, hidden = kept_width(model.config.hidden_size, 0.25), model.config.hidden_size
    report = SliceGPT(slice_head=slice_head, **CALIBRATION).prune(
        model, adapter, context(calibration_slice, 0.25))
    head = d if slice_head else hidden
    assert report["hidden_size_sliced"] == d == 48 and report["head_input_size"] == head
    assert count_parameters(model) == sliced_parameter_count(model.config, d, head)


@pytest.mark.parametrize("slice_head", [False, True])
def test_slicegpt_loses_nothing_when_the_stream_has_low_rank(tiny, slice_head, calibration_slice,
                                                             token_batch):
    """Confine everything written to the residual stream to a random 40-dim subspace: then the
    stream has rank 40 everywhere, and slicing D=64 to 48 must keep the logits."""
    _, model, _, adapter = tiny
    layout = adapter.residual_layout(model)
    basis = torch.linalg.qr(torch.randn(64, 40, generator=torch.Generator().manual_seed(0)))[0]
    project = basis @ basis.T  # [D, D]
    with torch.no_grad():
        for embedding in layout.embeddings:  # rows [V, D] are stream vectors
            model.get_submodule(embedding).weight.copy_(model.get_submodule(embedding).weight
                                                        @ project)
        for branch in (b for layer in layout.layers for b in layer):
            for writer in map(model.get_submodule, branch.writers):  # columns of W [D, in]
                writer.weight.copy_(project @ writer.weight)
                if writer.bias is not None:
                    writer.bias.copy_(project @ writer.bias)
    dense = logits(model, token_batch)
    SliceGPT(slice_head=slice_head, **CALIBRATION).prune(model, adapter,
                                                          context(calibration_slice, 0.25))
    assert model.get_submodule(layout.embeddings[0]).weight.shape[1] == 48
    sliced = logits(model, token_batch)
    assert ((sliced - dense).abs().max() / dense.abs().max()).item() < 1e-4


@pytest.mark.slow  # a subprocess without yopo on its path
def test_slicegpt_checkpoint_reloads_without_yopo(calibration_slice, token_batch, tmp_path):
    """The checkpoint carries its modeling code: a Python that cannot import yopo reloads it."""
    model, tokenizer = load_tiny("tiny_llama")
    method = SliceGPT(**CALIBRATION)
    method.prune(model, get_adapter(model), context(calibration_slice, 0.25))
    save_checkpoint(method.checkpoint_model(model), tokenizer, tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_yopo_sliced.SlicedForCausalLM"
    torch.save(token_batch, tmp_path / "ids.pt")
    script = (
        "import sys; sys.modules['yopo'] = None  # any import of yopo now fails\n"
        "import torch; from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'ckpt')!r}, "
        "trust_remote_code=True).eval()\n"
        f"with torch.no_grad(): out = m(torch.load({str(tmp_path / 'ids.pt')!r})).logits\n"
        f"torch.save(out, {str(tmp_path / 'out.pt')!r})\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=tmp_path,
                   capture_output=True)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), logits(model, token_batch),
                               rtol=1e-5, atol=1e-5)


def test_pipeline_records_slicegpt_semantics_and_parameters(tmp_path):
    # throughput on: its ideal speedup reads the FFN blocks of the sliced model, whose norms
    # carry no weight any more (folded into the linears)
    cfg = compose(["model=tiny_llama", "method=slicegpt", "ratio=0.25", "save_model=false",
                   "eval=demo", "eval.tasks=[]", "eval.perplexity=null",
                   "eval.throughput.batch_sizes=[1]", "eval.throughput.prompt_tokens=8",
                   "eval.throughput.decode_tokens=2", "eval.throughput.repeats=1", "logger=none",
                   f"data.calibration_tokens={HELD_OUT}", "method.calibration_tokens=256",
                   "method.calibration_seq_len=128"])
    metrics = run(cfg, tmp_path)
    model, _ = load_tiny("tiny_llama")
    assert metrics["ratio_semantics"] == "hidden_dim" and metrics["ratio_achieved"] == 0.25
    assert metrics["params_pruned"] == sliced_parameter_count(model.config, 48, 64)
    assert metrics["calibration_tokens"] == 256
    ideal = metrics["throughput"]["ideal_speedup"]
    assert ideal["prefill"] > 1 and ideal["ffn_ratio"] == 0  # narrower stream, same FFN width


def matmul_flops(model) -> float:
    """FLOPs of the matrix products one token's forward pass runs, counted by torch's own
    FlopCounterMode (aten.mm / addmm: every linear and every shortcut x @ S; a 1-token context
    leaves attention over it out, as the ideal speedup does)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.tensor([[5]]), use_cache=False)
    counts = counter.get_flop_counts()["Global"]
    return float(sum(n for op, n in counts.items() if str(op) in ("aten.mm", "aten.addmm")))


def test_slicegpt_ideal_speedup_counts_the_shortcut_products(tiny, calibration_slice, clone):
    """The shortcut matrices on the sliced norms are multiplied with every token: the ideal
    speedup's FLOPs are what the forward pass computes, its bytes every weight read (all
    parameters but the embeddings, which are looked up)."""
    _, model, _, adapter = tiny
    dense = clone(model)
    SliceGPT(**CALIBRATION).prune(model, adapter, context(calibration_slice, 0.25))
    ideal = ideal_speedup(dense, model, adapter)
    assert ideal["prefill"] == pytest.approx(matmul_flops(dense) / matmul_flops(model), rel=1e-9)
    embeddings = sum(m.weight.numel() for m in model.modules()
                     if isinstance(m, torch.nn.Embedding))
    bytes_read = 4 * (count_parameters(model) - embeddings)  # float32
    assert linear_cost(model, adapter)["weight_bytes"]["total"] == bytes_read


def test_slicegpt_rejects_post_norm_opt_before_changing_it():
    cfg = compose(["model=tiny_opt", "+model.config.do_layer_norm_before=false"])
    model, _ = load_model(cfg.model, cfg.paths.cache_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="do_layer_norm_before"):
        SliceGPT(**CALIBRATION).prune(model, get_adapter(model), PruneContext(0.2))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# ---- calibration ---------------------------------------------------------------------------------
def test_calibration_batches_are_the_start_of_the_held_out_slice(calibration_slice):
    ctx = PruneContext(0.2, tokenizer=byte_tokenizer(), data_dir=DATA_DIR,
                       calibration_tokens=HELD_OUT)  # the real path: tokenise, split
    batches = Calibration("local", tokens=300, seq_len=128).batches(ctx)
    assert batches.shape == (2, 128)
    assert torch.equal(batches.flatten(), calibration_slice[:256])
    with pytest.raises(ConfigError, match="calibration_tokens"):
        Calibration("local", tokens=HELD_OUT + 1, seq_len=1).batches(ctx)


@pytest.mark.parametrize("kwargs,match", [({"source": "web"}, "calibration_source"),
                                          ({"tokens": 64, "seq_len": 128}, "calibration_seq_len")])
def test_bad_calibration_settings_fail_early(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Calibration(**kwargs)


def test_hub_calibration_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ctx = PruneContext(0.2, tokenizer=byte_tokenizer())
    with pytest.raises(DataError, match="calibration_source=local"):
        Calibration("hub", tokens=256, seq_len=128).batches(ctx)


@pytest.mark.slow
def test_slicegpt_on_smollm2_at_ratio_zero_reproduces_the_dense_logits():
    """The real model has massive activations (up to ~436): the rotations must keep float error
    small, and its parameter count follows the LLaMA formula (larger: the head is untied)."""
    cfg = compose([])
    model, tokenizer = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
    _, text = split_calibration(wikitext2_token_ids(tokenizer, cfg.data.dir),
                                cfg.data.calibration_tokens)
    ids = text[:512].unsqueeze(0)
    dense = logits(model, ids)
    ctx = PruneContext(0.0, tokenizer=tokenizer, data_dir=Path(cfg.data.dir),
                       calibration_tokens=cfg.data.calibration_tokens)
    SliceGPT(calibration_tokens=512, calibration_seq_len=512).prune(model, get_adapter(model), ctx)
    sliced = logits(model, ids)
    assert ((sliced - dense).abs().max() / dense.abs().max()).item() < 1e-4
    assert count_parameters(model) == sliced_parameter_count(model.config, 576, 576)
