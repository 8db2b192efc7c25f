"""expected_activation: calibration-free scores from a weight-derived input model.

Tiny random models only; each scoring ingredient is checked on a constructed example where the
right answer is known."""
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import load_tiny, logits
from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.errors import ConfigError
from yopo.methods import build_method
from yopo.methods.base import PruneContext, kept_width
from yopo.methods.expected_activation import (ExpectedActivation, expected_output_size,
                                              first_attention_mean, gate_directions,
                                              layer_widths, share_widths,
                                              standard_normal_pairs)
from yopo.models import count_parameters
from yopo.pipeline import run, save_checkpoint

FAST = {"samples": 256}


def no_data(ratio=0.3):
    """A context with nothing but the ratio: no tokenizer, no data dir, no calibration."""
    return PruneContext(ratio=ratio, seed=0, tokenizer=None, data_dir=None, calibration_tokens=0)


def test_uniform_keeps_exactly_k_per_layer_deterministically_without_data(tiny, clone):
    name, model, _, adapter = tiny
    method = ExpectedActivation(allocation="uniform", **FAST)
    width = adapter.ffn_width(model)
    k = kept_width(width, 0.3)
    first, _ = method.keep_indices(clone(model), adapter, k, no_data())
    again, _ = method.keep_indices(clone(model), adapter, k, no_data())
    assert len(first) == len(adapter.decoder_layers(model))
    for a, b in zip(first, again):
        assert a.numel() == k == torch.unique(a).numel()
        assert torch.equal(a, b)
    report = method.prune(model, adapter, no_data())
    assert report["ffn_width_pruned"] == k == getattr(model.config, adapter.width_key)


def test_protect_ends_slices_each_layer_to_its_width_and_reloads(tiny, token_batch, clone,
                                                                 tmp_path):
    """Per-layer widths are real: fewer parameters, each layer keeps its top-scored neurons, and
    the checkpoint (a SlicedForCausalLM with its modeling file) reloads with the same logits."""
    name, model, tokenizer, adapter = tiny
    width, layers = adapter.ffn_width(model), len(adapter.decoder_layers(model))
    method = ExpectedActivation(allocation="protect_ends", protected_layers=[0, -1], **FAST)
    scores, _ = method.scores(model, adapter)  # [L, m] on the dense model
    dense = clone(model)
    report = method.prune(model, adapter, no_data(0.2))
    widths = report["ffn_widths_kept"]
    assert widths[0] == widths[-1] == width and min(widths) < width
    assert sum(widths) <= layers * kept_width(width, 0.2)
    assert report["ratio_achieved"] == pytest.approx(1 - sum(widths) / (layers * width))
    assert report["ratio_semantics"] == "ffn_width"
    assert [b.width for b in adapter.blocks(model)] == widths
    assert count_parameters(model) < count_parameters(dense)
    # the sliced model equals the dense one with the other neurons' writes zeroed
    with torch.no_grad():
        for block, row, k in zip(adapter.blocks(dense), scores, widths):
            dropped = torch.ones(width, dtype=torch.bool)
            dropped[row.topk(k).indices] = False
            block.ffn_out.weight[:, dropped] = 0.0
    pruned = logits(model, token_batch)
    torch.testing.assert_close(pruned, logits(dense, token_batch), rtol=1e-5, atol=1e-5)
    save_checkpoint(method.checkpoint_model(model), tokenizer, tmp_path / "pruned_model")
    config = json.loads((tmp_path / "pruned_model" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_yopo_sliced.SlicedForCausalLM"
    assert config["norms"] == {}
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned_model",
                                                    trust_remote_code=True).eval()
    assert count_parameters(reloaded) == count_parameters(model)
    torch.testing.assert_close(logits(reloaded, token_batch), pruned, rtol=1e-5, atol=1e-5)


def test_share_widths_by_hand():
    # shares per layer: [.4 .3 .2 .1], [.25 .25 .25 .25], [.7 .1 .1 .1]; ratio 0.5 keeps 2 of 4,
    # a budget of 6; min_keep 0.25 forces each layer's top neuron (3 taken); the other 3 go to
    # the largest remaining shares: .3 (layer 0), .25 and .25 (layer 1)
    scores = torch.tensor([[4.0, 3, 2, 1], [1, 1, 1, 1], [7, 1, 1, 1]])
    assert share_widths(scores, 0.5, 1, [], 0.25) == [2, 3, 1]
    # layer 2 protected: dense (4) plus the two floors use the whole budget of 6
    assert share_widths(scores, 0.5, 1, [-1], 0.25) == [1, 1, 4]


def test_share_allocation_prunes_to_the_share_widths():
    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)
    method = ExpectedActivation(allocation="share", protected_layers=[], min_keep=0.2, **FAST)
    scores, _ = method.scores(model, adapter)
    report = method.prune(model, adapter, no_data(0.3))
    assert report["ffn_widths_kept"] == share_widths(scores, 0.3, 1, [], 0.2)
    assert [b.width for b in adapter.blocks(model)] == report["ffn_widths_kept"]


def test_uniform_allocation_saves_a_standard_checkpoint():
    model, _ = load_tiny("tiny_llama")
    method = ExpectedActivation(allocation="uniform", **FAST)
    report = method.prune(model, get_adapter(model), no_data(0.2))
    assert report["ratio_semantics"] == "ffn_width"
    assert method.checkpoint_model(model) is model


def test_pipeline_records_per_layer_widths_and_real_parameters(tmp_path):
    cfg = compose(["model=tiny_llama", "method=expected_activation", "ratio=0.25",
                   "method.samples=256", "save_model=false", "eval=none", "logger=none"])
    metrics = run(cfg, tmp_path)
    model, _ = load_tiny("tiny_llama")
    # by hand: k = 0.75 * 160 = 120 per layer, 360 in all; layers 0 and 2 stay at 160, so the
    # middle one keeps 360 - 320 = 40
    widths = [160, 40, 160]
    assert metrics["ffn_widths_kept"] == widths and metrics["ratio_semantics"] == "ffn_width"
    ffn_params_per_neuron = 3 * model.config.hidden_size  # gate row, up row, down column
    assert metrics["params_dense"] - metrics["params_pruned"] == \
        ffn_params_per_neuron * (3 * 160 - sum(widths))


def test_layer_widths():
    assert layer_widths(4, 100, 0.2, 1, [0, -1]) == [100, 60, 60, 100]
    assert layer_widths(4, 100, 0.2, 8, []) == [80] * 4
    with pytest.raises(ConfigError, match="every layer"):
        layer_widths(2, 100, 0.2, 1, [0, 1])
    with pytest.raises(ConfigError, match="no neurons"):
        layer_widths(3, 100, 0.6, 1, [0, -1])


def test_share_widths_take_neurons_from_layers_whose_mass_sits_in_few_neurons():
    scores = torch.ones(3, 10)
    scores[1] = torch.tensor([100.0] + [1e-3 * i for i in range(1, 10)])  # one neuron does it all
    assert share_widths(scores, 0.2, 1, [], min_keep=0.2) == [10, 4, 10]
    assert share_widths(scores, 0.2, 2, [], min_keep=0.2) == [10, 4, 10]
    assert share_widths(scores, 0.2, 1, [-1], min_keep=0.2) == [10, 4, 10]
    widths = share_widths(scores, 0.4, 1, [0], min_keep=0.3)
    assert widths[0] == 10 and min(widths) >= 3 and sum(widths) <= 18
    with pytest.raises(ConfigError, match="budget"):
        share_widths(scores, 0.5, 1, [0, 2], min_keep=0.2)


def test_expected_output_size_matches_closed_forms():
    z = standard_normal_pairs(400_000)
    mean, var = torch.tensor([0.7, -0.3]), torch.tensor([0.5, 2.0])
    row = torch.tensor([[1.0, 0.5]])
    m, s = (row @ mean).item(), math.sqrt((row.pow(2) @ var).item())
    # identity act, one reader: E|a| of a ~ N(m, s^2) (folded normal)
    folded = s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s)) + m * math.erf(m / (s * math.sqrt(2)))
    got = expected_output_size([row], [None], mean, var, lambda a: a, z)
    assert got.item() == pytest.approx(folded, rel=5e-3)
    # gated with gate == up and identity act: h = a^2 >= 0, E h = m^2 + s^2
    got = expected_output_size([row, row], [None, None], mean, var, lambda a: a, z)
    assert got.item() == pytest.approx(m * m + s * s, rel=5e-3)
    # a bias shifts the pre-activation mean; the rms statistic is sqrt(E h^2) = sqrt(E a^2)
    got = expected_output_size([row], [torch.tensor([-m])], mean, var, lambda a: a, z, "rms")
    assert got.item() == pytest.approx(s, rel=5e-3)


def _biased_layers(layers=3, d=16, seed=0, flip=(1,)):
    """Gate matrices whose rows share a component along a known DC direction: 3/4 of the rows
    point against it (negatively biased, mostly off), 1/4 along it. Layers in `flip` have their
    rows negated AND their norm weight negated, so the DC seen in the residual stream is the same
    while the gate's singular vector sign is arbitrary."""
    gen = torch.Generator().manual_seed(seed)
    dc = torch.zeros(d)
    dc[:3] = torch.tensor([3.0, -2.0, 1.0])
    dc = dc / dc.norm()
    weights, norms = [], []
    for i in range(layers):
        sign = torch.ones(48)
        sign[:12] = -1.0  # the always-on minority
        rows = -sign[:, None] * 2.0 * dc + 0.3 * torch.randn(48, d, generator=gen)
        w = torch.ones(d)
        if i in flip:
            rows, w = -rows, -w
        weights.append(rows)
        norms.append(w)
    return weights, norms, dc


def test_gate_directions_find_the_dc_and_its_sign_in_every_layer():
    weights, norms, dc = _biased_layers()
    dirs = gate_directions(weights, norms, smoothing=0)
    for rows, w, v in zip(weights, norms, dirs):
        # v is in the FFN input space (after the norm weight); in the residual stream, v / w is
        # the DC: parallel to it, with the sign that leaves most neurons negatively biased
        assert torch.nn.functional.cosine_similarity(v.float() / w, dc, dim=0) > 0.95
        assert ((rows @ v.float()) < 0).float().mean() == pytest.approx(0.75, abs=0.05)
    smoothed = gate_directions(weights, norms, smoothing=1)
    for w, v in zip(norms, smoothed):
        assert torch.nn.functional.cosine_similarity(v.float() / w, dc, dim=0) > 0.95


def _always_on_minority(model, adapter):
    """Overwrite every FFN of a tiny LLaMA: 3/4 of the neurons have large gate rows pointing
    against the DC (mostly off), 1/4 small rows along it (always on). Returns the on-indices."""
    gen = torch.Generator().manual_seed(3)
    on = torch.arange(0, adapter.ffn_width(model), 4)
    for block in adapter.blocks(model):
        m, d = block.ffn1.shape
        dc = torch.zeros(d)
        dc[0] = 1.0
        gate = -4.0 * dc + 0.4 * torch.randn(m, d, generator=gen)
        gate[on] = 1.0 * dc + 0.05 * torch.randn(len(on), d, generator=gen)
        up = torch.randn(m, d, generator=gen)
        up[:, 0] = 0.0
        with torch.no_grad():
            block.ffn_in[0].weight.copy_(gate)
            block.ffn_in[1].weight.copy_(up)
            block.ffn_out.weight.copy_(torch.randn(d, m, generator=gen))
            block.norm_weight.fill_(1.0)
    return on


def test_the_dc_mean_keeps_small_always_on_neurons_that_norms_would_drop():
    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)
    on = _always_on_minority(model, adapter)
    k = len(on)
    aware = ExpectedActivation(allocation="uniform", first_layer_mean="gate_direction", **FAST)
    blind = ExpectedActivation(allocation="uniform", mean="none", **FAST)
    for keep in aware.keep_indices(model, adapter, k, no_data())[0]:
        assert torch.equal(keep, on)
    for keep in blind.keep_indices(model, adapter, k, no_data())[0]:
        assert len(set(keep.tolist()) & set(on.tolist())) < k // 2


def test_fold_norm_reads_through_the_norm_weight():
    """A neuron reading only channels the norm weight silences writes nothing: with the norm
    folded it scores ~0, without it scores like any other."""
    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)
    with torch.no_grad():
        for block in adapter.blocks(model):
            block.norm_weight[:8] = 1e-4
            for linear in block.ffn_in:
                linear.weight[0] = 0.0
                linear.weight[0, :8] = 1.0
    folded, _ = ExpectedActivation(mean="none", noise_power=0.0, **FAST).scores(model, adapter)
    plain, _ = ExpectedActivation(mean="none", fold_norm=False, **FAST).scores(model, adapter)
    assert (folded[:, 0] < 1e-3 * folded.median(dim=1).values).all()
    assert (plain[:, 0] > 0.1 * plain.median(dim=1).values).all()


FFN_NORM = {"tiny_phi": "input_layernorm", "tiny_opt": "final_layer_norm"}  # LayerNorm, biased
ACTIVATION = {"gelu_new": lambda a: torch.nn.functional.gelu(a, approximate="tanh"),
              "relu": torch.relu}


@pytest.mark.parametrize("name", sorted(FFN_NORM))
def test_pre_activation_means_include_the_layernorm_bias(name):
    """The FFN reads LayerNorm(h) * w + beta: with mean=none and vanishing noise the input is
    beta alone, so neuron j scores |act(fc1_j . beta + c_j)| * ||fc2[:, j]||, computed here
    directly from the modules."""
    model, _ = load_tiny(name)
    adapter = get_adapter(model)
    layers = adapter.decoder_layers(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in layers:
            getattr(layer, FFN_NORM[name]).bias.copy_(torch.randn(64, generator=generator))
    tiny_noise = {"noise_var": 1e-12, "first_layer_noise_var": 1e-12}
    scores, _ = ExpectedActivation(mean="none", **tiny_noise, **FAST).scores(model, adapter)
    act = ACTIVATION[adapter.activation_name(model)]
    for layer, row in zip(layers, scores):
        block = adapter.ffn_block(layer)
        beta = getattr(layer, FFN_NORM[name]).bias.detach().double()
        pre = block.ffn1.detach().double() @ beta + block.ffn_in[0].bias.detach().double()
        expected = act(pre).abs() * block.ffn_out.weight.detach().double().norm(dim=0)
        torch.testing.assert_close(row, expected, rtol=1e-6, atol=0.0)


def test_noise_power_reshapes_the_noise_at_the_same_total_variance():
    """p = 0: variance var * w^2 (isotropic before the norm weight); p = 1: flat; p = 2:
    proportional to 1 / w^2. The total stays var * ||w||^2, and a neuron reading only channels
    that the norm weight shrinks goes from silent (p = 0) to above the median (p = 2)."""
    w = torch.tensor([0.1, -0.5, 1.0, 2.0], dtype=torch.float64)
    for power, expected_shape in ((0.0, w.pow(2)), (1.0, torch.ones(4, dtype=torch.float64)),
                                  (2.0, w.pow(-2))):
        var = ExpectedActivation(noise_power=power).noise_variance(0.3, w)
        torch.testing.assert_close(var.sum(), 0.3 * w.pow(2).sum())
        torch.testing.assert_close(var / var.sum(), expected_shape / expected_shape.sum())
    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)
    with torch.no_grad():
        for block in adapter.blocks(model):
            block.norm_weight.fill_(1.0)
            block.norm_weight[:8] = 0.05
            for linear in block.ffn_in:  # neuron 0: a typical row norm, on the shrunk channels
                size = linear.weight.norm(dim=1).median()
                linear.weight[0] = 0.0
                linear.weight[0, :8] = size / 8 ** 0.5
    flat, _ = ExpectedActivation(mean="none", noise_power=0.0, **FAST).scores(model, adapter)
    shaped, _ = ExpectedActivation(mean="none", noise_power=2.0, **FAST).scores(model, adapter)
    assert (flat[:, 0] < 0.1 * flat.median(dim=1).values).all()
    assert (shaped[:, 0] > shaped.median(dim=1).values).all()


def test_first_attention_mean_is_the_token_independent_attention_output():
    """With every embedding row equal, every token's attention output is that row's value path
    whatever the attention weights: first_attention_mean must reproduce the module's output."""
    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)
    with torch.no_grad():
        row = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
        model.model.embed_tokens.weight.copy_(row.expand_as(model.model.embed_tokens.weight))
    seen = {}

    def record(module, args, output):  # returns None: the output passes on unchanged
        seen["out"] = output[0].detach()

    hook = model.model.layers[0].self_attn.register_forward_hook(record)
    with torch.no_grad():
        model(torch.randint(0, 256, (1, 12)))
    hook.remove()
    mean, rms = first_attention_mean(model, adapter)
    torch.testing.assert_close(seen["out"][0].double(), mean.expand(12, -1), rtol=1e-4, atol=1e-5)
    # the stream's RMS: embedding power plus the attention DC's power
    assert rms == pytest.approx(math.sqrt(row.double().pow(2).mean() + mean.pow(2).mean()))


def test_first_attention_mean_absent_for_parallel_branches():
    model, _ = load_tiny("tiny_phi")  # attention and FFN read the same norm in parallel
    assert first_attention_mean(model, get_adapter(model)) is None
    _, report = ExpectedActivation(**FAST).scores(model, get_adapter(model))
    assert report["first_layer_mean_used"] == "gate_direction"


@pytest.mark.parametrize("method", ["expected_activation", "expected_activation_uniform"])
def test_configs_build_and_bad_options_fail_clearly(method):
    built = build_method(compose([f"method={method}"]).method)
    assert isinstance(built, ExpectedActivation)
    with pytest.raises(ConfigError, match="allocation"):
        ExpectedActivation(allocation="greedy")
    with pytest.raises(ConfigError, match="noise_var"):
        ExpectedActivation(noise_var=0.0)
