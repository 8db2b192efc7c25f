"""Diagnostics only (never an input of the method): capture each layer's FFN input on 4
calibration chunks (2,048 tokens) of the dense model, and the residual stream entering each
layer, to common.CAPTURE_FILE (experiments/calibration_free/results/capture.pt, not in git),
which diagnostics.py, input_model.py and noise_shape.py read.

    python experiments/calibration_free/capture.py
"""
import torch

from common import CAPTURE_FILE, load, token_chunks

model, tok, ad = load()
chunks = token_chunks(tok, "calibration", 4)
layers = ad.decoder_layers(model)
ffn_in, resid = {}, {}
hooks = []
for i, layer in enumerate(layers):
    hooks.append(layer.mlp.register_forward_pre_hook(
        lambda m, a, i=i: ffn_in.setdefault(i, []).append(a[0].detach().flatten(0, 1).clone())))
    hooks.append(layer.register_forward_pre_hook(
        lambda m, a, kw=None, i=i: resid.setdefault(i, []).append(a[0].detach().flatten(0, 1).clone())))
with torch.inference_mode():
    for s in range(0, 4, 2):
        model(chunks[s:s + 2], use_cache=False)
X = torch.stack([torch.cat(ffn_in[i]) for i in range(len(layers))])  # [L, T, d]
R = torch.stack([torch.cat(resid[i]) for i in range(len(layers))])
CAPTURE_FILE.parent.mkdir(parents=True, exist_ok=True)
torch.save({"ffn_in": X, "resid_absmax": R.abs().amax(1), "resid_rms": R.pow(2).mean(1).sqrt(),
            "resid_first_tok": R.view(len(layers), 4, 512, -1)[:, :, 0].clone(),
            "resid_mean": R.mean(1)}, CAPTURE_FILE)
print(X.shape)
