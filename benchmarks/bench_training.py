"""Training throughput: augmented vs un-augmented, with the data resident on the device.

    .venv/bin/python benchmarks/bench_training.py                        # CPU: small_cnn, 32×32 RGB
    .venv/bin/python benchmarks/bench_training.py --device cuda          # GPU: cifar_resnet, bf16, NHWC
    .venv/bin/python benchmarks/bench_training.py --device cuda --preset thesis-cifar10 --scale 0.1

Three tables:

1. *Training pipeline*: `augcam.training.train_model` itself (the loop a study runs) on random
   CIFAR-shaped images held on the device, once without augmentation and once with each of the
   seven augmentations and the identity control (copies = 1: every epoch is the N originals and N
   augmented copies, augmented as whole batches with per-sample parameters). Images/s is the best
   epoch after a warm-up epoch; the ratio augmented / un-augmented is the target (≥ 0.9 on a GPU).
   "augmentation alone" is the augmentation's own throughput on full batches.
2. *kornia vs torchvision.transforms.v2* on batched tensors, for the augmentations where both offer
   the operation (equalisation, Gaussian blur with per-image sigma, hue shift with per-image
   angle). v2's functional ops take one parameter per call, so per-image randomness needs one call
   per image ("v2 per image"); "v2 one call" draws a single setting for the whole batch — faster,
   but not the augmentation of the study (reported for reference only). The maximum difference
   from the implementation augcam uses is shown.
3. With `--preset NAME`: seconds per epoch of that preset's model and training recipe at its input
   size, un-augmented and augmented, on its data if present (else random images of its shape),
   scaled to the full training set, Grad-CAM and metric throughput on its test-set size, and the
   whole study's estimated time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kornia
from common import best_time, machine, parse_args, print_table, sync

from augcam.augment import build_augmentation
from augcam.config import load_config
from augcam.models import MODELS, build_model
from augcam.pipeline.chain import train_settings
from augcam.training import TrainingData, TrainSettings, train_model

AUGMENTATIONS = [
    "identity",
    "affine",
    "cutmix",
    "color_jitter",
    "elastic",
    "equalization",
    "gaussian_blur",
    "random_crop",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="registered model (default: small_cnn on CPU, cifar_resnet on GPU)"
    )
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--data-size", type=int, default=32, help="side of the stored images (CIFAR: 32)")
    parser.add_argument("--image-size", type=int, default=None, help="model input side (default: the data size)")
    parser.add_argument(
        "--images", type=int, default=None, help="training images (default 2048 CPU, 45000 GPU), × scale"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 CPU, 512 GPU")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default fp32 CPU, bf16 GPU")
    parser.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default off on CPU, on on GPU"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward pass")
    parser.add_argument("--augmentations", default=",".join(AUGMENTATIONS), help="comma-separated")
    parser.add_argument("--preset", default=None, help="also time an epoch of this preset (table 3)")
    parser.add_argument(
        "--preset-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset setting, as `augcam run --set` (repeatable)",
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="only tables 2 (and 3)")


def random_images(count: int, channels: int, side: int, seed: int, device: torch.device) -> torch.Tensor:
    """uint8-quantised random images as float32 in [0, 1] (what a study's data looks like)."""
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, 256, (count, channels, side, side), generator=generator, dtype=torch.uint8)
        .to(device)
        .float()
        .div_(255)
    )


def epoch_throughput(
    model_name: str, data: TrainingData, settings: TrainSettings, augmentation, num_classes: int, device: torch.device
) -> float:
    """Images/s of the best epoch after the first (warm-up: allocator, cuDNN, compilation)."""
    model = build_model(model_name, data.train_images.shape[1], num_classes, init_seed=0).to(device)
    result = train_model(model, data, settings, augmentation, seed=0)
    return max(row["images"] / row["seconds"] for row in result.history[1:])


def augmentation_throughput(
    augmentation, images: torch.Tensor, batch_size: int, device: torch.device, repeats: int
) -> float:
    def run():
        for batch, start in enumerate(range(0, len(images), batch_size)):
            augmentation(images[start : start + batch_size], torch.Generator().manual_seed(batch))

    run()  # warm-up
    seconds, _ = best_time(run, device, repeats)
    return len(images) / seconds


def pipeline_table(
    args, model_name: str, settings: TrainSettings, images: torch.Tensor, labels: torch.Tensor, names: list[str]
) -> None:
    device = args.device
    # A one-image validation set: evaluation is in each epoch's time and is not what is measured.
    data = TrainingData(
        images,
        labels,
        images[:1],
        labels[:1],
        (0.5,) * args.channels,
        (0.25,) * args.channels,
        args.image_size if args.image_size != args.data_size else None,
    )
    plain = epoch_throughput(model_name, data, settings, None, 10, device)
    rows = [["none (baseline)", f"{plain:.0f}", "1.00", "—"]]
    for name in names:
        augmentation = build_augmentation(name)
        speed = epoch_throughput(model_name, data, settings, augmentation, 10, device)
        alone = augmentation_throughput(augmentation, images, settings.batch_size, device, args.repeats)
        rows.append([name, f"{speed:.0f}", f"{speed / plain:.2f}", f"{alone:.0f}"])
        print(f"  {name}: done", file=sys.stderr)
    recipe = ", ".join(f"{k}={getattr(settings, k)}" for k in ("precision", "channels_last", "compile"))
    print(
        f"## Training pipeline: {model_name}, {len(images)} images {args.channels}×{args.data_size}²"
        f"{f' → {args.image_size}²' if args.image_size != args.data_size else ''}, batch {settings.batch_size}, "
        f"{recipe}\n"
    )
    print_table(["augmentation", "training img/s", "ratio to un-augmented", "augmentation alone img/s"], rows)
    print()


# --- kornia vs torchvision.transforms.v2 ------------------------------------------------------------


def _v2_per_image(op, images, params):
    return torch.stack([op(image, value) for image, value in zip(images, params)])


def alternatives(batch: torch.Tensor, generator: torch.Generator):
    """(augmentation, implementation, function, is augcam's) for each operation with a choice."""
    n = len(batch)
    sigma = (0.1 + 1.9 * torch.rand(n, generator=generator, dtype=torch.float64)).to(batch.device, batch.dtype)
    hue = ((torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * 0.2).to(batch.device, batch.dtype)
    blur = build_augmentation("gaussian_blur")
    kernel = blur.kernel_size
    sigma_list, hue_list = sigma.tolist(), hue.tolist()
    return [
        ("equalization", "torchvision v2 equalize (batched)", lambda: TF.equalize(batch), True),
        ("equalization", "kornia enhance.equalize", lambda: kornia.enhance.equalize(batch), False),
        (
            "gaussian_blur",
            "kornia gaussian_blur2d (per-image sigma)",
            lambda: kornia.filters.gaussian_blur2d(
                batch, (kernel, kernel), torch.stack([sigma, sigma], 1), border_type="reflect"
            ).clamp_(0, 1),
            True,
        ),
        (
            "gaussian_blur",
            "v2 gaussian_blur per image",
            lambda: torch.stack(
                [TF.gaussian_blur(image, [kernel, kernel], [s, s]) for image, s in zip(batch, sigma_list)]
            ).clamp_(0, 1),
            False,
        ),
        (
            "gaussian_blur",
            "v2 gaussian_blur one call (one sigma per batch)",
            lambda: TF.gaussian_blur(batch, [kernel, kernel], [sigma_list[0]] * 2),
            None,
        ),
        (
            "color_jitter (hue)",
            "kornia adjust_hue (per-image angle)",
            lambda: kornia.enhance.adjust_hue(batch, hue * (2 * math.pi)).clamp_(0, 1),
            True,
        ),
        (
            "color_jitter (hue)",
            "v2 adjust_hue per image",
            lambda: torch.stack([TF.adjust_hue(image, h) for image, h in zip(batch, hue_list)]),
            False,
        ),
        (
            "color_jitter (hue)",
            "v2 adjust_hue one call (one shift per batch)",
            lambda: TF.adjust_hue(batch, hue_list[0]),
            None,
        ),
    ]


def alternatives_table(args, images: torch.Tensor, batch_size: int) -> None:
    if images.shape[1] != 3:
        return
    batch = images[:batch_size]
    options = alternatives(batch, torch.Generator().manual_seed(0))
    reference: dict[str, torch.Tensor] = {}
    rows = []
    for operation, label, run, ours in options:
        run()  # warm-up
        seconds, out = best_time(run, args.device, max(args.repeats, 3))
        if ours:
            reference[operation] = out
        # "one call" applies another setting to most images: its difference measures nothing.
        error = "—" if ours or ours is None else f"{float((out - reference[operation]).abs().max()):.1e}"
        role = "augcam's" if ours else ("not per-image: reference only" if ours is None else "alternative")
        rows.append([operation, label, role, f"{len(batch) / seconds:.0f}", error])
    print(
        f"## kornia vs torchvision.transforms.v2 on a batch of {len(batch)} images "
        f"{images.shape[1]}×{images.shape[2]}²\n"
    )
    print_table(["operation", "implementation", "role", "img/s", "max |difference| from augcam's"], rows)
    print()


# --- one preset's epoch and study estimate --------------------------------------------------------


def preset_table(args) -> None:
    import yaml

    from augcam.cams import compute
    from augcam.data import load_dataset
    from augcam.errors import AugcamError
    from augcam.metrics import compare_maps
    from augcam.models import get_layer

    overrides = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.preset_set)}
    config = load_config(args.preset, overrides=overrides)
    d, t, device = config.data, config.training, args.device
    try:
        train_set, test_set = load_dataset(d.dataset, d.root, False)
        source = f"{d.dataset} files"
        full_train = d.train_size or round(len(train_set.images) * (1 - d.val_fraction))
        full_test = d.test_size or len(test_set.images)
        channels, side, classes = train_set.images.shape[1], train_set.images.shape[-1], len(train_set.classes)
        count = max(t.batch_size, int(full_train * args.scale))
        images = train_set.images[:count].to(device).float().div_(255)
        labels = train_set.labels[:count].to(device)
    except AugcamError:  # no data on this machine: images of the preset's shape (CIFAR-10)
        source = "random CIFAR-shaped images (dataset absent)"
        channels, side, classes, full_train, full_test = 3, 32, 10, 45000, 10000
        count = max(t.batch_size, int(full_train * args.scale))
        images = random_images(count, channels, side, 0, device)
        labels = torch.arange(count, device=device) % classes
    settings = replace(train_settings(config), epochs=2)  # the preset's loop, base augmentations included
    data = TrainingData(images, labels, images[:1], labels[:1], (0.5,) * channels, (0.25,) * channels, d.image_size)
    plain = epoch_throughput(config.model.name, data, settings, None, classes, device)
    augmented = epoch_throughput(config.model.name, data, settings, build_augmentation("affine"), classes, device)
    plain_epoch = full_train / plain
    augmented_epoch = full_train * (1 + t.copies) / augmented
    augmented_models = len(config.study_augmentations) * len(config.seeds)
    plain_models = 1 + config.controls.baseline_replicas
    train_total = t.epochs * (plain_models * plain_epoch + augmented_models * augmented_epoch)

    # CAMs (main method, fast path where declared) and metrics for every model on the test set.
    input_side = d.image_size or side
    model = build_model(config.model.name, channels, classes, 0).to(device).eval()
    spec = MODELS[config.model.name]
    cam_images = random_images(max(config.cam.batch_size, int(full_test * args.scale)), channels, input_side, 1, device)
    layer = get_layer(model, config.model.target_layer or spec.target_layer)
    compute(
        config.cam.method,
        model,
        layer,
        cam_images[: config.cam.batch_size],
        batch_size=config.cam.batch_size,
        head=spec.head,
    )
    cam_seconds, maps = best_time(
        lambda: compute(config.cam.method, model, layer, cam_images, batch_size=config.cam.batch_size, head=spec.head),
        device,
        args.repeats,
    )
    metric_seconds, _ = best_time(
        lambda: compare_maps(maps, maps.flip(0), overlap_percentages=config.metrics.overlap_percentages),
        device,
        args.repeats,
    )
    models = plain_models + augmented_models
    cam_total = models * cam_seconds * full_test / len(cam_images)
    metric_total = (models - 1) * metric_seconds * full_test / len(cam_images)
    print(
        f"## Preset {args.preset}: {config.model.name} at {input_side}², batch {t.batch_size}, "
        f"{', '.join(f'{k}={v}' for k, v in t.recipe().items()) or 'reference recipe'}"
        f"{''.join(f', base {e.display}' for e in t.base_augmentations)}; {source}, "
        f"{count} training images measured, scaled to {full_train}\n"
    )
    rows = [
        ["epoch, un-augmented", f"{full_train}", f"{plain:.0f}", f"{plain_epoch:.1f}"],
        [
            "epoch, augmented (affine, copies 1)",
            f"{full_train * (1 + t.copies)}",
            f"{augmented:.0f}",
            f"{augmented_epoch:.1f}",
        ],
        [f"training, {models} models × {t.epochs} epochs", "", "", f"{train_total:.0f}"],
        [
            f"{config.cam.method} on {full_test} test images × {models} models",
            "",
            f"{len(cam_images) / cam_seconds:.0f}",
            f"{cam_total:.0f}",
        ],
        [
            f"metrics, {models - 1} comparisons × {full_test} maps",
            "",
            f"{len(cam_images) / metric_seconds:.0f}",
            f"{metric_total:.0f}",
        ],
        ["whole study (estimate)", "", "", f"{train_total + cam_total + metric_total:.0f}"],
    ]
    print_table(["stage", "images", "img/s", "seconds"], rows)
    print()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, "image", add_arguments, argv)
    gpu = args.device.type == "cuda"
    model_name = args.model or ("cifar_resnet" if gpu else "small_cnn")
    args.image_size = args.image_size or args.data_size
    batch_size = args.batch_size or (512 if gpu else 128)
    precision = args.precision or ("bf16" if gpu else "fp32")
    channels_last = args.channels_last if args.channels_last is not None else gpu
    count = max(2 * batch_size, int((args.images or (45000 if gpu else 2048)) * args.scale))
    print(f"# Training throughput on {machine(args.device)}\n")
    images = random_images(count, args.channels, args.data_size, 0, args.device)
    labels = torch.arange(count, device=args.device) % 10
    # 1 + repeats epochs: the first is the warm-up.
    settings = TrainSettings(
        1 + max(1, args.repeats),
        batch_size,
        1e-3,
        0.0,
        0,
        1,
        1024,
        precision=precision,
        channels_last=channels_last,
        compile=args.compile,
    )
    started = time.perf_counter()
    if not args.skip_pipeline:
        names = [name for name in args.augmentations.split(",") if name]
        pipeline_table(args, model_name, settings, images, labels, names)
    alternatives_table(args, images, batch_size)
    if args.preset:
        preset_table(args)
    sync(args.device)
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
