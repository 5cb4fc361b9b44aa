"""Grad-CAM throughput: augcam vs pytorch-grad-cam's GradCAM, same model, layer, images and targets.

    .venv/bin/python benchmarks/bench_cams.py                 # CPU, the three default cases
    .venv/bin/python benchmarks/bench_cams.py --device cuda   # GPU (more images per case)

Each case runs both implementations in this process on the same images, asserts that the maps
agree within 1e-5, and prints images/s for pytorch-grad-cam, augcam's general path (one backward
pass per batch, from the logits to the target layer only) and augcam's fast path (declared linear
head: no backward pass), with the ratios; "forward only" is the model's plain batched forward
pass, the ceiling for any CAM method that needs the logits.
Targets are the predicted classes on both sides (argmax of the logits).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from pytorch_grad_cam import GradCAM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time, parse_args, calibrated_model, machine, print_table  # noqa: E402

from augcam.cams import compute  # noqa: E402
from augcam.models import MODELS, get_layer  # noqa: E402

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
            maps.append(torch.from_numpy(cam(input_tensor=images[start:start + batch_size], targets=None)))
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

        def ours(use_head):
            return lambda: compute("gradcam", model, layer, images, batch_size=batch_size, head=use_head)

        # Warm-up (lazy initialisation, allocator) on one batch each.
        reference_maps(model, layer, images[:batch_size], batch_size)
        compute("gradcam", model, layer, images[:batch_size], batch_size=batch_size, head=head)

        reference_time, expected = best_time(lambda: reference_maps(model, layer, images, batch_size),
                                             device, args.repeats)
        general_time, general = best_time(ours(None), device, args.repeats)
        fast_time, fast = best_time(ours(head), device, args.repeats)

        def forward_only():
            with torch.inference_mode():
                for start in range(0, count, batch_size):
                    model(images[start:start + batch_size])

        # The floor of any CAM that needs the logits: one forward pass, nothing else.
        forward_time, _ = best_time(forward_only, device, args.repeats)
        expected = expected.to(device)
        for label, maps in (("general", general), ("fast", fast)):
            error = float((maps - expected).abs().max())
            assert error <= 1e-5, f"{name}: augcam's {label} path differs from pytorch-grad-cam by {error:.2e}"
        rows.append([f"{name} {side}×{side}", str(count), str(batch_size),
                     f"{count / reference_time:.1f}", f"{count / general_time:.1f}",
                     f"{count / fast_time:.1f}" if head else "—", f"{count / forward_time:.1f}",
                     f"{reference_time / general_time:.2f}×",
                     f"{reference_time / fast_time:.2f}×" if head else "—"])
        print(f"  {name}: done", file=sys.stderr)

    print_table(["case", "images", "batch", "pytorch-grad-cam img/s", "augcam general img/s",
                 "augcam fast img/s", "forward only img/s", "general ratio", "fast ratio"], rows)
    print("\nmaps of both augcam paths equal pytorch-grad-cam's within 1e-5 (asserted)")


if __name__ == "__main__":
    main()
