"""Grad-CAM throughput: augcam vs pytorch-grad-cam's GradCAM, same model, layer, images and targets.

    .venv/bin/python benchmarks/bench_cams.py                 # CPU, the three default cases
    .venv/bin/python benchmarks/bench_cams.py --device cuda   # GPU (more images per case)

Each case runs every implementation in this process on the same images and prints images/s for
pytorch-grad-cam and for augcam:

* *plain*: ``optimize=False``, the model as given; general path (one backward pass per batch, from
  the logits to the target layer only). Its maps are asserted equal to pytorch-grad-cam's within
  1e-5: the same arithmetic.
* *general* and *fast*: the defaults, on an `inference_copy` (BatchNorm folded, channels_last,
  frozen parameters); *fast* with the model's declared linear head (no backward pass). Other
  convolution algorithms round differently, so these maps are compared with float64 maps (the
  same model and images in double precision): their error must be within 1e-5 or within 3×
  pytorch-grad-cam's own error (asserted), and both errors are printed.
* *forward only*: the inference copy's plain batched forward pass, the ceiling for any CAM
  method that needs the logits.

Targets are the predicted classes on both sides (argmax of the logits).
"""

from __future__ import annotations

import sys
from copy import deepcopy
from pathlib import Path

import torch
from pytorch_grad_cam import GradCAM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_times, calibrated_model, machine, parse_args, print_table

from augcam.cams import compute, inference_copy
from augcam.models import MODELS, get_layer

# (model, input channels, side, images on CPU, images on GPU, batch size)
CASES = [
    ("small_cnn", 1, 28, 2000, 20000, 500),
    ("resnet18", 3, 64, 256, 4096, 64),
    ("efficientnet_b0", 3, 224, 32, 1024, 16),
]


def reference_maps(model, layer, images, batch_size):
    """pytorch-grad-cam over the same batches (its own call takes one batch at a time)."""
    maps = []
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for start in range(0, len(images), batch_size):
            maps.append(torch.from_numpy(cam(input_tensor=images[start : start + batch_size], targets=None)))
    return torch.cat(maps)


def main() -> None:
    args = parse_args(__doc__, "image")
    device = args.device
    print(f"# Grad-CAM throughput on {machine(device)}\n")

    rows = []
    for name, channels, side, cpu_count, gpu_count, batch_size in CASES:
        count = max(batch_size, int((gpu_count if device.type == "cuda" else cpu_count) * args.scale))
        model = calibrated_model(name, channels, side, 10, device)
        layer = get_layer(model, MODELS[name].target_layer)
        images = torch.randn(count, channels, side, side, generator=torch.Generator().manual_seed(0)).to(device)
        head = MODELS[name].head

        def ours(use_head, optimize=True):
            return lambda: compute(
                "gradcam", model, layer, images, batch_size=batch_size, head=use_head, optimize=optimize
            )

        # Warm-up (lazy initialisation, allocator) on one batch each.
        reference_maps(model, layer, images[:batch_size], batch_size)
        compute("gradcam", model, layer, images[:batch_size], batch_size=batch_size, head=head)
        compute("gradcam", model, layer, images[:batch_size], batch_size=batch_size, optimize=False)

        copy, _copy_layer = inference_copy(model, layer)

        def forward_only():
            with torch.inference_mode():
                for start in range(0, count, batch_size):
                    copy(images[start : start + batch_size])

        (
            (reference_time, expected),
            (plain_time, plain),
            (general_time, general),
            (fast_time, fast),
            (forward_time, _),
        ) = best_times(
            [
                lambda: reference_maps(model, layer, images, batch_size),
                ours(None, optimize=False),
                ours(None),
                ours(head),
                forward_only,
            ],
            device,
            args.repeats,
        )
        expected = expected.to(device)
        plain_error = float((plain - expected).abs().max())
        assert plain_error <= 1e-5, f"{name}: augcam's plain path differs from pytorch-grad-cam by {plain_error:.2e}"
        # Float64 maps of the same model and images: how far each float32 computation is from them.
        exact = compute(
            "gradcam",
            deepcopy(model).double(),
            MODELS[name].target_layer,
            images.double(),
            batch_size=batch_size,
            optimize=False,
        ).float()
        reference_error = float((expected - exact).abs().max())
        optimized_error = max(float((maps - exact).abs().max()) for maps in (general, fast))
        assert optimized_error <= max(1e-5, 3 * reference_error), (
            f"{name}: augcam's optimised maps are {optimized_error:.2e} from the float64 maps, "
            f"pytorch-grad-cam's {reference_error:.2e}"
        )
        to_reference = max(float((maps - expected).abs().max()) for maps in (general, fast))
        rows.append(
            [
                f"{name} {side}×{side}",
                str(count),
                str(batch_size),
                f"{count / reference_time:.1f}",
                f"{count / plain_time:.1f}",
                f"{count / general_time:.1f}",
                f"{count / fast_time:.1f}" if head else "—",
                f"{count / forward_time:.1f}",
                f"{reference_time / plain_time:.2f}×",
                f"{reference_time / general_time:.2f}×",
                f"{reference_time / fast_time:.2f}×" if head else "—",
                f"{plain_error:.1e}",
                f"{to_reference:.1e}",
                f"{reference_error:.1e} / {optimized_error:.1e}",
            ]
        )
        print(f"  {name}: done", file=sys.stderr)

    print_table(
        [
            "case",
            "images",
            "batch",
            "pytorch-grad-cam img/s",
            "augcam plain img/s",
            "augcam general img/s",
            "augcam fast img/s",
            "forward only img/s",
            "plain ratio",
            "general ratio",
            "fast ratio",
            "max |plain − ref|",
            "max |optimised − ref|",
            "error vs float64: ref / optimised",
        ],
        rows,
    )
    print(
        "\nplain maps equal pytorch-grad-cam's within 1e-5; optimised maps are within 1e-5 of the float64 maps or "
        "within 3× pytorch-grad-cam's own distance from them (both asserted)"
    )


if __name__ == "__main__":
    main()
