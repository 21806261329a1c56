"""A tiny random DPT depth model for the depth tests (built locally, no downloads)."""

from __future__ import annotations

from pathlib import Path


def write_tiny_dpt(folder: Path) -> None:
    """A tiny random DPT depth model saved as a local transformers folder (a few seconds)."""
    import torch
    import transformers

    config = transformers.DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
        initializer_range=0.1,  # the default 0.02 leaves the random output flat (1e-7 spread)
    )
    torch.manual_seed(0)
    model = transformers.DPTForDepthEstimation(config)
    with torch.no_grad():  # random init often ends in ReLU(negative) = flat 0: lift the output
        model.head.head[4].bias.fill_(1.0)  # type: ignore[union-attr]
    model.save_pretrained(str(folder))
    processor = transformers.DPTImageProcessor(
        size={"height": 32, "width": 32}, keep_aspect_ratio=False
    )
    processor.save_pretrained(str(folder))
