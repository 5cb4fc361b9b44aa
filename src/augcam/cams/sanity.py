"""Sanity check for a CAM method: cascading model-parameter randomisation (Adebayo et al., 2018).

An explanation that survives the destruction of the model it explains says nothing about the
model (an edge detector passes for a saliency map on natural images). The check re-initialises
the model's layers one at a time from the output down, cumulatively, and after each step measures
how similar the CAMs of the randomised model are to those of the trained one (Spearman rank
correlation per image, the same implementation as the study's metrics). A method passes when
the similarity collapses: the median |Spearman| after the last step is below `threshold`.

    table = cascading_randomization(model, "features", images, method="gradcam")
    sanity_verdict(table)      # {"passes": True, "final_median": 0.03, ...}

The CAM targets stay the trained model's predicted classes throughout, so only the model changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from augcam.cams import compute, eval_mode
from augcam.metrics.maps import compare_maps

__all__ = ["cascading_randomization", "layers_in_forward_order", "sanity_verdict", "spearman_summary", "CamFunction"]

# (model, images, targets) -> input-sized maps (N, H, W)
CamFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def layers_in_forward_order(model: nn.Module, images: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters directly and that run in a forward pass on
    `images`, in the order they first run (module registration order is not execution order in
    general, e.g. torchvision's ResNet registers `fc` before nothing but runs `avgpool` first). A
    module with submodules (a ViT owning its class token) counts from when it starts: its own
    parameters are used before its submodules' outputs come back."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            record = lambda *_args, name=name: order.append(name) if name not in order else None  # noqa: E731
            if any(True for _ in module.children()):
                handles.append(module.register_forward_pre_hook(record))
            else:
                handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            try:
                model(images[:1])
            finally:
                model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _reinitialise(module: nn.Module, generator_seed: int) -> None:
    """The module's own parameters drawn afresh: by its `reset_parameters` where it has one,
    otherwise (a ViT's class token and position embedding, a layer scale, Swin's relative position
    bias table) each parameter from a normal distribution with its own current spread (0.02, the
    ViT initialisers' spread, for a constant one), which destroys what training put there."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            with torch.no_grad():
                for parameter in module.parameters(recurse=False):
                    spread = float(parameter.std()) if parameter.numel() > 1 else 0.0
                    parameter.normal_(0.0, spread if spread > 0 else 0.02)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
        module.reset_running_stats()


def cascading_randomization(
    model: nn.Module,
    target_layer: str,
    images: torch.Tensor,
    *,
    method: str = "gradcam",
    cam_function: CamFunction | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman between the trained model's CAMs and those after each cumulative randomisation
    step, from the output layer down. Returns one row per step (step 0 = no randomisation):
    `step, layer, spearman_median, spearman_q25, spearman_q75, abs_spearman_median, n_images,
    n_undefined`.

    `cam_function` overrides the CAM method (e.g. to check a method that is not registered); by
    default the maps come from `augcam.cams.compute(method, model, target_layer, ...)`. The
    model itself is not changed: the check works on a deep copy.
    """
    if cam_function is None:

        def cam_function(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return compute(method, m, target_layer, x, t)

    device = next(model.parameters()).device
    images = images.to(device)
    with eval_mode(model), torch.no_grad():
        targets = model(images).argmax(dim=1)
    reference = cam_function(model, images, targets)
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    order = layers_in_forward_order(randomised, images)
    rows = [spearman_summary(0, "(trained model)", compare_maps(reference, reference)["spearman"])]
    for step, name in enumerate(reversed(order), start=1):
        _reinitialise(modules[name], seed + step)
        maps = cam_function(randomised, images, targets)
        rows.append(spearman_summary(step, name, compare_maps(reference, maps)["spearman"]))
    return pd.DataFrame(rows)


def spearman_summary(step: int, layer: str, spearman: torch.Tensor) -> dict:
    """One row of the sanity table: quantiles of per-image Spearman values of one step."""
    values = spearman.double().cpu()
    defined = values[~torch.isnan(values)]
    quantiles = (
        torch.quantile(defined, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
        if len(defined)
        else [float("nan")] * 3
    )
    abs_median = float(defined.abs().median()) if len(defined) else float("nan")
    return {
        "step": step,
        "layer": layer,
        "spearman_median": quantiles[1],
        "spearman_q25": quantiles[0],
        "spearman_q75": quantiles[2],
        "abs_spearman_median": abs_median,
        "n_images": len(values),
        "n_undefined": len(values) - len(defined),
    }


def sanity_verdict(table: pd.DataFrame, threshold: float = 0.5) -> dict:
    """Whether the CAM method passes: the median |Spearman| to the trained model's maps must fall
    below `threshold` once every layer is randomised. Absolute, as in Adebayo et al.: an inverted
    map still carries the structure the check is looking for. A constant map (undefined Spearman)
    counts as no similarity, since a method whose maps turn constant explains nothing."""
    final = table.iloc[-1]
    final_median = 0.0 if final["n_undefined"] == final["n_images"] else float(final["abs_spearman_median"])
    return {
        "passes": bool(final_median < threshold),
        "final_median": final_median,
        "threshold": threshold,
        "steps": int(final["step"]),
    }
