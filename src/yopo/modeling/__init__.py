"""Model classes yopo adds to transformers: the sliced checkpoint that reloads on its own
(`modeling_yopo_sliced`, copied into every per-layer-width or SliceGPT checkpoint) and the
fused gate/up MLP used for evaluation and throughput (`fused_mlp`)."""
