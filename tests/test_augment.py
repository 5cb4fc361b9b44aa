"""Tests of augcam.augment: the batch contract, the randomness rules, oracles against torchvision,
and the configuration errors."""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from pydantic import Field, ValidationError
from torchvision.transforms import InterpolationMode

from augcam.augment import (
    AUGMENTATIONS,
    Affine,
    Augmentation,
    ColorJitter,
    CutMix,
    Elastic,
    GaussianBlur,
    RandomCrop,
    RandomErasing,
    build_augmentation,
    geometric,
    mixing,
    photometric,
    register_augmentation,
    sample_beta,
)
from augcam.errors import ConfigError

BUILT_IN = [
    "affine",
    "color_jitter",
    "cutmix",
    "elastic",
    "equalization",
    "gaussian_blur",
    "horizontal_flip",
    "identity",
    "random_crop",
    "random_erasing",
    "translate",
]
DETERMINISTIC = {"identity", "equalization"}
RANDOM = [name for name in BUILT_IN if name not in DETERMINISTIC]
SIZE = {1: 28, 3: 32}  # Fashion-MNIST and CIFAR-10 sizes


def images(batch: int, channels: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, SIZE[channels], SIZE[channels], generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def as_device(params: dict[str, torch.Tensor], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """What Augmentation.__call__ does between sample_params and apply."""
    return {k: v.to(like.device, like.dtype if v.is_floating_point() else v.dtype) for k, v in params.items()}


def test_every_built_in_is_registered():
    assert set(BUILT_IN) <= set(AUGMENTATIONS)
    for name in BUILT_IN:
        assert AUGMENTATIONS[name].name == name


def test_built_ins_are_registered_in_the_study_order():
    # The registry's order is the order a study lists and trains its augmentations in.
    built_in = [name for name in AUGMENTATIONS if AUGMENTATIONS[name].__module__.startswith("augcam.augment.")]
    assert built_in == [
        "affine",
        "cutmix",
        "color_jitter",
        "elastic",
        "equalization",
        "gaussian_blur",
        "random_crop",
        "horizontal_flip",
        "translate",
        "identity",
        "random_erasing",
        "mixup",
        "cutmix_targets",
        "saliencymix",
    ]


@pytest.mark.parametrize("module", [geometric, photometric, mixing])
def test_every_augmentation_class_of_the_built_in_modules_is_registered(module):
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Augmentation)
        and value.__module__ == module.__name__
        and "name" in vars(value)
    ]
    assert classes, f"no augmentation found in {module.__name__}"
    for cls in classes:
        assert AUGMENTATIONS.get(cls.name) is cls, f"{cls.__name__} is not registered as {cls.name!r}"


# --- the batch contract -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [0, 1, 7])
def test_shape_dtype_range(name, channels, batch):
    x = images(batch, channels)
    out = build_augmentation(name)(x, gen(1))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert out.device == x.device
    if batch:
        assert torch.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_same_seed_same_output(name):
    x = images(7, 3)
    aug = build_augmentation(name)
    torch.testing.assert_close(aug(x, gen(5)), aug(x, gen(5)), rtol=0, atol=0)


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_different_output(name):
    x = images(7, 3)
    aug = build_augmentation(name)
    assert not torch.equal(aug(x, gen(5)), aug(x, gen(6)))


@pytest.mark.parametrize("name", [n for n in RANDOM if n != "cutmix"])
@pytest.mark.parametrize("channels", [1, 3])
def test_parameters_are_drawn_per_sample(name, channels):
    x = images(1, channels).expand(8, -1, -1, -1).contiguous()
    out = build_augmentation(name)(x, gen(2))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) >= 2
    assert not torch.equal(out, x)  # and the batch really was augmented


def test_cutmix_boxes_and_partners_are_drawn_per_sample():
    # Copies of one image would make CutMix neutral, so look at where the pixels changed instead.
    x = images(8, 3)
    changed = (CutMix()(x, gen(2)) != x).any(dim=1)  # (B, H, W)
    assert len({tuple(c.flatten().tolist()) for c in changed}) >= 2


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_generator_is_the_only_randomness(name):
    x = images(7, 3)
    aug = build_augmentation(name)
    torch.manual_seed(0)
    first = aug(x, gen(9))
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    second = aug(x, gen(9))
    assert torch.equal(torch.get_rng_state(), state), "the global RNG was consumed"
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_generator_consumption_depends_on_shape_only(name):
    # Parameters are drawn from the batch's shape alone, so content (and device) cannot change how
    # much of the stream a call uses.
    aug = build_augmentation(name)
    g1, g2 = gen(3), gen(3)
    aug(images(7, 3, seed=0), g1)
    aug(images(7, 3, seed=1), g2)
    assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_same_stream_and_result_on_cuda(name):
    aug = build_augmentation(name)
    x = images(7, 3)
    g_cpu, g_cuda = gen(4), gen(4)
    on_cpu = aug(x, g_cpu)
    on_cuda = aug(x.cuda(), g_cuda)
    assert on_cuda.device.type == "cuda"
    assert torch.equal(g_cpu.get_state(), g_cuda.get_state())
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-4)


def test_rejects_bad_inputs():
    aug = build_augmentation("affine")
    with pytest.raises(ValueError, match="B, C, H, W"):
        aug(torch.rand(3, 28, 28), gen(0))
    with pytest.raises(ValueError, match="B, C, H, W"):
        aug(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), gen(0))
    with pytest.raises(ValueError, match="Generator"):
        aug(images(2, 1), None)


# --- oracles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_equalization_matches_torchvision_per_image(channels):
    x = images(5, channels) ** 2  # skewed histogram, so equalising changes it
    out = build_augmentation("equalization")(x, gen(0))
    for i in range(len(x)):
        as_uint8 = TF.to_dtype(x[i], torch.uint8, scale=True)
        expected = TF.equalize(as_uint8).float() / 255
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)


def test_affine_with_neutral_parameters_is_identity():
    x = images(5, 3)
    aug = build_augmentation("affine", {"degrees": 0, "translate": 0, "scale": (1, 1), "shear": 0})
    torch.testing.assert_close(aug(x, gen(0)), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_affine_matches_torchvision_with_drawn_parameters(channels):
    x = images(6, channels)
    aug = Affine(degrees=30, translate=0.2, scale=(0.7, 1.3), shear=20)
    params = aug.sample_params(tuple(x.shape), gen(3))
    out = aug.apply(x, as_device(params, x))
    for i in range(len(x)):
        expected = TF.affine(
            x[i],
            angle=float(params["angle"][i]),
            translate=[int(t) for t in params["translate"][i]],
            scale=float(params["scale"][i]),
            shear=[float(params["shear"][i]), 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-4)
    # The draws honour the ranges.
    assert params["angle"].abs().max() <= 30 and params["shear"].abs().max() <= 20
    assert ((params["scale"] >= 0.7) & (params["scale"] <= 1.3)).all()
    assert params["translate"].abs().max() <= round(0.2 * SIZE[channels])


def test_random_crop_of_whole_image_is_identity():
    x = images(5, 3)
    torch.testing.assert_close(
        build_augmentation("random_crop", {"size_fraction": 1.0})(x, gen(0)), x, rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_random_crop_matches_torchvision_resized_crop(channels):
    x = images(6, channels)
    aug = RandomCrop(size_fraction=0.6)
    size = SIZE[channels]
    crop_h, crop_w = aug.crop_size(size, size)
    assert (crop_h, crop_w) == (round(0.6 * size), round(0.6 * size))
    params = aug.sample_params(tuple(x.shape), gen(3))
    assert (params["top"] >= 0).all() and (params["top"] <= size - crop_h).all()
    out = aug.apply(x, as_device(params, x))
    for i in range(len(x)):
        expected = TF.resized_crop(
            x[i], int(params["top"][i]), int(params["left"][i]), crop_h, crop_w, [size, size], antialias=True
        )
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_horizontal_flip_mirrors_the_images_whose_coin_says_so(channels):
    x = images(16, channels)
    aug = build_augmentation("horizontal_flip")
    params = aug.sample_params(tuple(x.shape), gen(4))
    assert params["flip"].dtype == torch.bool and 0 < int(params["flip"].sum()) < 16
    out = aug.apply(x, as_device(params, x))
    for i in range(len(x)):
        assert torch.equal(out[i], TF.horizontal_flip(x[i]) if params["flip"][i] else x[i])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("pixels", [1, 2, 4])
def test_translate_matches_torchvision_reflect_padded_crop(channels, pixels):
    x = images(40, channels)
    size = SIZE[channels]
    aug = build_augmentation("translate", {"pixels": pixels})
    params = aug.sample_params(tuple(x.shape), gen(5))
    offsets = torch.cat([params["top"], params["left"]])
    assert set(offsets.tolist()) == set(range(2 * pixels + 1)), "every shift in [−pixels, pixels] is drawn"
    out = aug.apply(x, as_device(params, x))
    for i in range(len(x)):
        padded = TF.pad(x[i], [pixels], padding_mode="reflect")
        assert torch.equal(out[i], TF.crop(padded, int(params["top"][i]), int(params["left"][i]), size, size))


def test_translate_by_zero_is_identity_and_a_shift_as_large_as_the_image_is_refused():
    x = images(3, 1)
    assert torch.equal(build_augmentation("translate", {"pixels": 0})(x, gen(0)), x)
    with pytest.raises(ValueError, match="pixels=28 needs images larger"):
        build_augmentation("translate", {"pixels": 28})(x, gen(0))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_per_image_is_false_exactly_for_augmentations_that_paste_from_a_partner(name):
    aug = build_augmentation(name)
    uses_partner = "partner" in aug.sample_params((4, 3, 32, 32), gen(0))
    assert aug.per_image is not uses_partner


@pytest.mark.parametrize("sigma", [0.3, 1.7])
def test_gaussian_blur_with_fixed_sigma_matches_torchvision(sigma):
    x = images(4, 3)
    out = build_augmentation("gaussian_blur", {"kernel_size": 5, "sigma": (sigma, sigma)})(x, gen(0))
    for i in range(len(x)):
        torch.testing.assert_close(out[i], TF.gaussian_blur(x[i], [5, 5], [sigma, sigma]), rtol=0, atol=1e-5)


def test_gaussian_blur_uses_each_drawn_sigma():
    x = images(6, 1)
    aug = GaussianBlur(kernel_size=7)
    params = aug.sample_params(tuple(x.shape), gen(3))
    assert ((params["sigma"] >= 0.1) & (params["sigma"] <= 2.0)).all()
    out = aug.apply(x, as_device(params, x))
    for i in range(len(x)):
        s = float(params["sigma"][i])
        torch.testing.assert_close(out[i], TF.gaussian_blur(x[i], [7, 7], [s, s]), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "part, reference",
    [
        ("brightness", TF.adjust_brightness),
        ("contrast", TF.adjust_contrast),
        ("saturation", TF.adjust_saturation),
        ("hue", TF.adjust_hue),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_parts_match_torchvision(part, reference, channels):
    x = images(6, channels)
    settings = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, part: 0.3}
    aug = ColorJitter(**settings)
    params = aug.sample_params(tuple(x.shape), gen(3))
    low, high = (-0.3, 0.3) if part == "hue" else (0.7, 1.3)
    assert ((params[part] >= low) & (params[part] <= high)).all()
    out = aug.apply(x, as_device(params, x))
    for i in range(len(x)):
        torch.testing.assert_close(out[i], reference(x[i], float(params[part][i])), rtol=0, atol=1e-5)
    if channels == 1 and part in ("saturation", "hue"):
        assert torch.equal(out, x)


def test_color_jitter_brightness_factor_range_is_clipped_at_zero():
    params = ColorJitter(brightness=1.5).sample_params((500, 3, 4, 4), gen(0))
    assert params["brightness"].min() >= 0.0 and params["brightness"].max() <= 2.5


def test_elastic_matches_torchvision_with_drawn_displacement():
    x = images(4, 3)
    aug = Elastic()
    params = as_device(aug.sample_params(tuple(x.shape), gen(3)), x)
    out = aug.apply(x, params)
    displacement = aug.displacement(params["noise"])
    assert displacement.shape == (4, 32, 32, 2)
    for i in range(len(x)):
        torch.testing.assert_close(out[i], TF.elastic(x[i], displacement[i : i + 1]), rtol=0, atol=1e-5)


def test_elastic_without_strength_is_identity():
    x = images(3, 1)
    torch.testing.assert_close(build_augmentation("elastic", {"alpha": 0.0})(x, gen(0)), x, rtol=0, atol=1e-5)


def test_identity_without_noise_returns_its_input_and_draws_nothing():
    x = images(7, 3)
    g = gen(4)
    before = g.get_state()
    aug = build_augmentation("identity")
    assert aug(x, g) is x
    assert torch.equal(g.get_state(), before), "noise_std 0 must not consume the stream"
    # Left out of the dump, so the model key of a study listing `identity` is the one it had.
    assert aug.model_dump(mode="json") == {}
    assert build_augmentation("identity", {"noise_std": 1e-3}).model_dump(mode="json") == {"noise_std": 1e-3}


def test_identity_noise_is_the_generator_s_gaussian_scaled_and_clipped():
    sigma = 1e-3
    x = torch.full((6, 3, 32, 32), 0.5, dtype=torch.float64)
    x[0] = 0.0  # clipped at the bottom
    x[1] = 1.0  # and at the top
    aug = build_augmentation("identity", {"noise_std": sigma})
    out = aug(x, gen(5))
    # Oracle: the draw the docstring states, one (B, C, H, W) standard normal tensor.
    expected = (x + sigma * torch.randn(x.shape, generator=gen(5), dtype=torch.float64)).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    diff = (out - x)[2:]
    assert diff.abs().max() <= 5.5 * sigma and diff.abs().max() > 2 * sigma
    assert abs(diff.mean().item()) < 4 * sigma / math.sqrt(diff.numel())
    assert diff.std().item() == pytest.approx(sigma, rel=0.03)
    assert out[0].min() == 0 and out[0].max() > 0 and out[1].max() == 1 and out[1].min() < 1
    torch.testing.assert_close(aug(x, gen(5)), out, rtol=0, atol=0)  # reproducible for a seed
    assert not torch.equal(aug(x, gen(6))[2:], out[2:])  # and another seed, other noise


def test_noisy_identity_draws_from_the_generator_alone_by_shape():
    aug = build_augmentation("identity", {"noise_std": 1e-3})
    g1, g2 = gen(3), gen(3)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    aug(images(7, 3, seed=0), g1)
    aug(images(7, 3, seed=1), g2)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG was consumed"
    assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_noisy_identity_is_the_same_on_cuda():
    aug = build_augmentation("identity", {"noise_std": 1e-3})
    x = images(7, 3)
    torch.testing.assert_close(aug(x.cuda(), gen(4)).cpu(), aug(x, gen(4)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("value", [0.01, 0.5, -1e-4])
def test_identity_refuses_perceptible_or_negative_noise(value):
    with pytest.raises(ConfigError, match=r"augmentations\.noise_std: must be >= 0 and < 0\.01.*imperceptible"):
        build_augmentation("identity", {"noise_std": value})


def test_small_images_shrink_the_blur_kernels():
    x = torch.rand(3, 3, 8, 8, generator=gen(0))
    for name in ("elastic", "gaussian_blur"):
        out = build_augmentation(name, {"kernel_size": 21} if name == "gaussian_blur" else {})(x, gen(1))
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_cutmix_pastes_the_drawn_box_from_the_partner(alpha):
    x = images(9, 3)  # continuous random pixels: no two images share a value by chance
    aug = CutMix(alpha=alpha)
    params = aug.sample_params(tuple(x.shape), gen(7))
    out = aug.apply(x, as_device(params, x))
    partner = params["partner"]
    assert sorted(partner.tolist()) == list(range(9))  # a permutation …
    assert (partner != torch.arange(9)).all()  # … without fixed points
    partner_pixels = x[partner]
    assert ((out == x) | (out == partner_pixels)).all()
    changed = (out != x).any(dim=1)  # (B, H, W)
    for i, (x1, y1, x2, y2) in enumerate(params["box"].tolist()):
        area = max(0, x2 - x1) * max(0, y2 - y1)
        assert changed[i].sum().item() == area
        assert changed[i, y1:y2, x1:x2].all()
        # The box side follows λ: about sqrt(1 − λ) of each side (before clipping at the borders).
        assert x2 - x1 <= 2 * int(0.5 * math.sqrt(1 - float(params["lam"][i])) * 32)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("value", [0.0, 0.7])
def test_random_erasing_matches_torchvision_erase_with_drawn_boxes(channels, value):
    aug = RandomErasing(value=value)
    x = images(16, channels)
    params = aug.sample_params(tuple(x.shape), gen(3))
    out = aug.apply(x, as_device(params, x))
    for i, (x1, y1, x2, y2) in enumerate(params["box"].tolist()):
        expected = TF.erase(x[i], y1, x1, y2 - y1, x2 - x1, torch.tensor(value))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=0)
    # Everything outside the boxes is untouched, and boxes differ between images.
    assert len({tuple(b) for b in params["box"].tolist()}) > 1


def test_random_erasing_box_sizes_follow_the_scale_and_ratio_ranges():
    aug = RandomErasing(scale=(0.1, 0.2), ratio=(0.5, 2.0))
    box = aug.sample_params((4000, 1, 28, 28), gen(0))["box"].double()
    h, w = box[:, 3] - box[:, 1], box[:, 2] - box[:, 0]
    area = h * w / (28 * 28)
    # Rounding h and w to whole pixels moves the area by at most about one row and one column.
    assert area.min() > 0.1 - 2 * 6 / 784 and area.max() < 0.2 + 2 * 10 / 784
    assert 0.14 < area.mean() < 0.16  # U(0.1, 0.2) has mean 0.15
    ratio = h / w
    assert ratio.min() > 0.5 * 0.7 and ratio.max() < 2.0 / 0.7
    assert (box[:, 0] >= 0).all() and (box[:, 2] <= 28).all() and (box[:, 1] >= 0).all() and (box[:, 3] <= 28).all()
    # The top-left corner is uniform over the positions where the box fits.
    assert box[:, 0].float().std() > 3


def test_random_erasing_rejects_a_bad_scale():
    with pytest.raises(ConfigError, match=r"augmentations\.scale"):
        build_augmentation("random_erasing", {"scale": [0.5, 0.1]})


def test_cutmix_of_a_single_image_is_unchanged():
    x = images(1, 3)
    assert torch.equal(CutMix()(x, gen(0)), x)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_beta_sampler_mean_and_variance(alpha):
    lam = sample_beta(alpha, 40000, gen(0))
    assert lam.dtype == torch.float64
    assert ((lam >= 0) & (lam <= 1)).all()
    variance = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - variance) < 0.005


def test_beta_sampler_asymmetric_and_tiny_shapes():
    lam = sample_beta(2.0, 40000, gen(1), beta=5.0)
    assert abs(lam.mean().item() - 2 / 7) < 0.01
    assert abs(lam.var().item() - 10 / (49 * 8)) < 0.003
    tiny = sample_beta(0.01, 1000, gen(2))  # Gamma draws underflow; λ must still be valid
    assert torch.isfinite(tiny).all() and ((tiny >= 0) & (tiny <= 1)).all()
    assert ((tiny < 0.01) | (tiny > 0.99)).float().mean() > 0.8  # mass at the ends


# --- building from a configuration ------------------------------------------------------------


def test_build_returns_validated_frozen_instance():
    aug = build_augmentation("gaussian_blur", {"sigma": [0.5, 1.0]})
    assert isinstance(aug, GaussianBlur) and aug.sigma == (0.5, 1.0)
    with pytest.raises(ValidationError, match="frozen"):
        aug.kernel_size = 3
    # The dumped parameters (what the study records) build the same augmentation again.
    for name in BUILT_IN:
        original = build_augmentation(name)
        assert build_augmentation(name, original.model_dump(mode="json")) == original


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        build_augmentation("gaussian_blurr")
    message = str(info.value)
    assert message.startswith("augmentations: ")
    assert "did you mean 'gaussian_blur'" in message
    for name in BUILT_IN:
        assert name in message


def test_unknown_parameter_suggests_the_near_one():
    with pytest.raises(ConfigError) as info:
        build_augmentation("affine", {"degres": 10}, where="augmentations[affine]")
    assert str(info.value) == (
        "augmentations[affine]: unknown parameter 'degres'; did you mean 'degrees'? "
        "(valid: degrees, translate, scale, shear)"
    )


def test_parameter_of_wrong_type_names_the_field():
    with pytest.raises(ConfigError) as info:
        build_augmentation("gaussian_blur", {"sigma": "abc"}, where="augmentations[gaussian_blur]")
    assert str(info.value) == "augmentations[gaussian_blur].sigma: Input should be a valid tuple (got 'abc')"


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("gaussian_blur", {"sigma": (2.0, 1.0)}, "sigma"),
        ("gaussian_blur", {"sigma": (0.0, 1.0)}, "sigma[0]"),
        ("gaussian_blur", {"kernel_size": 4}, "kernel_size"),
        ("affine", {"scale": (1.2, 0.8)}, "scale"),
        ("affine", {"translate": 1.5}, "translate"),
        ("affine", {"degrees": float("nan")}, "degrees"),
        ("random_crop", {"size_fraction": 0.0}, "size_fraction"),
        ("color_jitter", {"hue": 0.7}, "hue"),
        ("color_jitter", {"brightness": -0.1}, "brightness"),
        ("elastic", {"sigma": 0}, "sigma"),
        ("cutmix", {"alpha": -1}, "alpha"),
    ],
)
def test_bad_parameter_is_one_config_error_naming_the_field(name, params, field):
    with pytest.raises(ConfigError) as info:
        build_augmentation(name, params, where=f"augmentations[{name}]")
    assert str(info.value).startswith(f"augmentations[{name}].{field}: ")


def test_range_error_says_low_must_not_exceed_high():
    with pytest.raises(ConfigError, match=r"low <= high"):
        build_augmentation("gaussian_blur", {"sigma": (2.0, 1.0)})


def test_several_problems_still_make_one_error():
    with pytest.raises(ConfigError) as info:
        build_augmentation("affine", {"degres": 1, "scale": "x"})
    assert "'degres'" in str(info.value) and "augmentations.scale" in str(info.value)


def test_parameters_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        build_augmentation("affine", [1, 2])


def test_parameterless_augmentation_rejects_parameters():
    with pytest.raises(ConfigError, match=r"unknown parameter 'strength'.*\(valid: none\)"):
        build_augmentation("equalization", {"strength": 1})


# --- user-defined augmentations ---------------------------------------------------------------


@pytest.fixture
def restore_registry():
    saved = dict(AUGMENTATIONS)
    yield
    AUGMENTATIONS.clear()
    AUGMENTATIONS.update(saved)


def test_user_defined_augmentation_works_through_build(restore_registry):
    @register_augmentation
    class Invert(Augmentation):
        """Invert a random fraction of the images' intensity."""

        name: ClassVar[str] = "test_invert"
        strength: float = Field(1.0, ge=0.0, le=1.0)

        def __call__(self, images, generator):
            amount = (torch.rand(len(images), generator=generator) * self.strength).to(images.device)
            return images + amount.view(-1, 1, 1, 1) * (1 - 2 * images)

    aug = build_augmentation("test_invert", {"strength": 0.5})
    x = images(4, 1)
    out = aug(x, gen(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    with pytest.raises(ConfigError, match=r"test_invert\]\.strength"):
        build_augmentation("test_invert", {"strength": 2}, where="augmentations[test_invert]")
    with pytest.raises(ConfigError, match="did you mean 'strength'"):
        build_augmentation("test_invert", {"strenght": 0.1})


def test_user_defined_augmentation_with_sample_and_apply(restore_registry):
    @register_augmentation
    class Darken(Augmentation):
        name: ClassVar[str] = "test_darken"

        def sample_params(self, shape, generator):
            return {"factor": torch.rand(shape[0], generator=generator, dtype=torch.float64)}

        def apply(self, images, params):
            assert params["factor"].dtype == images.dtype  # moved and cast by __call__
            return images * params["factor"].view(-1, 1, 1, 1)

    x = images(3, 3)
    assert torch.equal(build_augmentation("test_darken")(x, gen(1)), build_augmentation("test_darken")(x, gen(1)))
    assert torch.equal(build_augmentation("test_darken")(x[:0], gen(1)), x[:0])


def test_registering_a_duplicate_name_warns(restore_registry):
    class Again(Augmentation):
        name: ClassVar[str] = "identity"

        def apply(self, images, params):
            return images

    with pytest.warns(UserWarning, match="identity"):
        register_augmentation(Again)
    assert AUGMENTATIONS["identity"] is Again  # the newest definition wins


def test_registering_a_new_name_does_not_warn(restore_registry):
    class Fresh(Augmentation):
        name: ClassVar[str] = "test_fresh"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_augmentation(Fresh)


def test_register_rejects_non_augmentations():
    with pytest.raises(TypeError):
        register_augmentation(dict)

    class Nameless(Augmentation):
        pass

    with pytest.raises(TypeError, match="name"):
        register_augmentation(Nameless)
