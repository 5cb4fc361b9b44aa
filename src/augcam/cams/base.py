"""The machinery shared by every CAM method: capture, gradients, the fast linear-head path, hooks.

A method is a subclass of `CAMMethod` registered with `@register_cam_method`. The base class runs
the forward pass, captures the target layer's output A, read as maps (B, C, h, w) whatever its
layout (channels-last, or a transformer's tokens: augcam.models.layers, the reference's
`reshape_transform` applied to activations and gradients alike), takes the gradient G of each
image's target logit with respect to A when the method uses gradients, and asks the method for the
layer-resolution map before ReLU through one of two hooks:

* ``channel_weights(A, G) -> (B, C)`` — the map is Σ_c w_c · A_c (Grad-CAM, Grad-CAM++, XGrad-CAM);
* ``layer_map(capture) -> (B, h, w)`` — anything else (HiRes-CAM, Layer-CAM, Eigen-CAM, Score-CAM,
  saliency); the default implementation is the weighted sum above.

The base class then applies ReLU, as pytorch-grad-cam does for every method.

Fast path. When the model declares a `LinearHead` for the target layer (logits = W · mean_hw(A) + b),
the gradient of logit c with respect to A[k, i, j] is W[c, k] / (h·w) at every pixel, so gradient
methods get G without a backward pass: one forward pass (no autograd graph) and the hooks. The
declaration is checked on every batch by recomputing the logits from A.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from augcam.errors import ConfigError
from augcam.models import LayerLayout, LinearHead, get_layer, layer_layout
from augcam.registry import Registry

logger = logging.getLogger(__name__)

CAM_METHODS: Registry[type[CAMMethod]] = Registry("CAM method")


def register_cam_method(cls: type[CAMMethod]) -> type[CAMMethod]:
    """Class decorator registering a `CAMMethod` subclass under its `name`; a class that sets no
    `display_name` is displayed by its `name`."""
    if "display_name" not in vars(cls):
        cls.display_name = cls.name
    return CAM_METHODS.register(cls.name)(cls)


def cam_method_display_name(method: str) -> str:
    """A CAM method's name as the literature writes it (``gradcam`` → ``Grad-CAM``); an unknown
    name is returned as it is (a run directory read after its method was unregistered)."""
    cls = CAM_METHODS.get(str(method))
    return str(method) if cls is None else cls.display_name


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def capture_output(layer: nn.Module, *, as_leaf: bool = False) -> Iterator[list[Tensor]]:
    """Collect the outputs of `layer` during the forward passes inside the block; the hook is
    removed on exit, even after an exception.

    `as_leaf`: each captured output becomes a leaf of the autograd graph (detached, then requiring
    grad) and the rest of the network is computed from it, so the gradient of the logits with
    respect to it never involves the layers before it (and with frozen parameters, as in
    `inference_copy`, no graph is recorded there at all). Nothing then flows back past the layer."""
    outputs: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor:
        if as_leaf:
            output = output.detach().requires_grad_(True)
        outputs.append(output)
        # The rest of the network gets a copy: some forwards (DenseNet's) apply an in-place ReLU
        # to this output, which would otherwise change the captured activations and gradients.
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def resolve_layer(model: nn.Module, target_layer: nn.Module | str) -> nn.Module:
    if isinstance(target_layer, nn.Module):
        return target_layer
    return get_layer(model, target_layer)


def _layer_name(model: nn.Module, layer: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is layer:
            return name
    raise ValueError(f"the target layer {type(layer).__name__} is not a submodule of {type(model).__name__}")


def inference_copy(model: nn.Module, target_layer: nn.Module | str) -> tuple[nn.Module, nn.Module]:
    """A copy of `model` for computing CAMs, and the copy's target layer.

    The copy computes the same function (up to float rounding) with less work: it is in eval
    mode, its parameters do not require gradients (so a forward pass records no autograd graph
    before the target layer), every BatchNorm that follows a convolution is folded into it (one
    layer instead of two), and its parameters are channels_last, the layout that oneDNN and cuDNN
    convolutions run fastest in. On a 2-core CPU this makes the forward pass of small_cnn at 28²
    about 5× and of EfficientNet-B0 at 224² about 3× faster (docs/benchmarks.md). `model` itself is
    not touched: its mode, parameters and hooks stay as they are.

    The convolution → BatchNorm pairs are found by tracing the model with torch.fx; a model that
    fx cannot trace keeps its BatchNorm layers (logged at INFO). A pair is left alone when either
    layer is the target layer, or the convolution lies inside it and the BatchNorm outside: the
    target layer's output is what the CAM reads.
    """
    layer_name = _layer_name(model, resolve_layer(model, target_layer))
    copy = deepcopy(model).eval()
    _fold_batch_norms(copy, keep=layer_name)
    copy.requires_grad_(False)  # after folding, which makes new parameters
    copy.to(memory_format=torch.channels_last)
    return copy, copy.get_submodule(layer_name)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def _within(name: str, ancestor: str) -> bool:
    return ancestor == "" or name == ancestor or name.startswith(ancestor + ".")


def _fold_batch_norms(model: nn.Module, keep: str) -> int:
    """Fold each BatchNorm2d that is the only user of a Conv2d's output into that convolution (in
    eval mode BatchNorm is an affine map per channel); returns the number of pairs folded."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:  # fx cannot trace data-dependent control flow; folding is optional
        logger.info("BatchNorm not folded for CAMs: torch.fx cannot trace %s (%s)", type(model).__name__, error)
        return 0
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        # Exact types only: a subclass may change what the layer computes (a weight-standardised
        # convolution, say). Without running statistics BatchNorm normalises by each batch's own
        # statistics, even in eval mode.
        norm = modules.get(node.target)
        if node.op != "call_module" or type(norm) is not nn.BatchNorm2d or norm.running_mean is None:
            continue
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if not (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
        ):
            continue
        conv_name, norm_name = source.target, node.target
        # Folding a convolution inside the target layer into a BatchNorm outside it would change
        # the layer's output, which is what the CAM reads.
        if (
            keep in (conv_name, norm_name)
            or (_within(conv_name, keep) and not _within(norm_name, keep))
            or calls[conv_name] != 1
            or calls[norm_name] != 1
        ):
            continue
        pairs.append((conv_name, norm_name))
    for conv_name, norm_name in pairs:
        _set_submodule(model, conv_name, fuse_conv_bn_eval(modules[conv_name], modules[norm_name]))
        _set_submodule(model, norm_name, nn.Identity())
    return len(pairs)


def linear_head_classifier(model: nn.Module, layer: nn.Module, head: LinearHead | None) -> nn.Linear | None:
    """The head's `nn.Linear` if `head` is declared for exactly this target layer, else None
    (then CAMs take the general path). A declaration whose modules are not a global average
    pooling and a linear layer raises ValueError: it would give wrong maps silently."""
    if head is None or get_layer(model, head.layer) is not layer:
        return None
    pool = get_layer(model, head.pool)
    classifier = get_layer(model, head.classifier)
    if not (isinstance(pool, (nn.AdaptiveAvgPool2d,)) and pool.output_size in (1, (1, 1))):
        raise ValueError(f"LinearHead.pool {head.pool!r} is {pool!r}, not a global average pooling")
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"LinearHead.classifier {head.classifier!r} is {type(classifier).__name__}, not nn.Linear")
    return classifier


@dataclass(frozen=True)
class LayerCapture:
    """What a method's hooks see for one batch (every tensor on the model's device, detached)."""

    model: nn.Module  # in eval mode, no hooks of ours attached
    images: Tensor  # (B, C_in, H, W)
    activations: Tensor  # (B, C, h, w): the target layer's output (the images for input methods)
    gradients: Tensor | None  # d(target logit)/d(activations), same shape; None if not used
    targets: Tensor  # (B,) class indices
    batch_size: int  # images per forward pass, for methods that run more forward passes


def _single_output(outputs: list[Tensor]) -> Tensor:
    if len(outputs) != 1:
        raise ValueError(
            f"the target layer ran {len(outputs)} times in one forward pass; choose a layer that runs exactly once"
        )
    return outputs[0]


def _layout(model: nn.Module, output: Tensor, images: Tensor) -> LayerLayout:
    layout = layer_layout(model, tuple(output.shape), tuple(images.shape[-2:]))
    if layout is None:
        raise ConfigError(
            f"model.target_layer: the layer's output has shape {tuple(output.shape)}, which is no spatial map; "
            "a CAM needs (batch, channels, height, width), (batch, height, width, channels) or tokens on a grid"
        )
    return layout


def _check_head(logits: Tensor, activations: Tensor, classifier: nn.Linear) -> None:
    """The declared head must reproduce the model's logits from the captured activations."""
    with torch.no_grad():
        head_logits = F.linear(activations.mean(dim=(2, 3)), classifier.weight, classifier.bias)
    logits = logits.detach()
    scale = float(logits.abs().max()) if logits.numel() else 0.0
    # Loose enough for reduced-precision matmuls (TF32), far below what a missing ReLU or another
    # layer between the pooling and the classifier changes.
    if not torch.allclose(head_logits, logits, rtol=1e-3, atol=1e-3 * (1.0 + scale)):
        difference = float((head_logits - logits).abs().max())
        raise ValueError(
            "the model's declared LinearHead does not hold: logits computed as "
            "classifier(mean of the target layer) differ from the model's logits by "
            f"{difference:.3g}; fix or remove the model's `head` declaration"
        )


class CAMMethod:
    """Base class: subclasses set `name` (the config's `cam.method`) and `display_name` (how the
    literature writes it, used by the report and figures), and override `channel_weights` or
    `layer_map`."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    uses_gradients: ClassVar[bool] = True
    # True: explain the input pixels instead of a layer (gradient saliency); the target layer is unused.
    explains_input: ClassVar[bool] = False

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """(B, C, h, w) activations and gradients → (B, C) weights."""
        raise NotImplementedError(f"{type(self).__name__} must override channel_weights or layer_map")

    def layer_map(self, capture: LayerCapture) -> Tensor:
        """The map (B, h, w) before ReLU; by default Σ_c w_c · A_c with `channel_weights`."""
        weights = self.channel_weights(capture.activations, capture.gradients)
        return torch.einsum("bc,bchw->bhw", weights, capture.activations)

    def raw(
        self,
        model: nn.Module,
        layer: nn.Module,
        images: Tensor,
        targets: Tensor | None,
        *,
        head: nn.Linear | None = None,
        batch_size: int = 256,
    ) -> tuple[Tensor, Tensor]:
        """One batch (model in eval mode): raw maps (B, h, w) at the layer's resolution (≥ 0) and
        logits (B, K). `head` is the classifier of a declared LinearHead for this layer, or None."""
        capture, logits = self._capture(model, layer, images, targets, head, batch_size)
        return torch.relu(self.layer_map(capture)), logits

    def _capture(
        self,
        model: nn.Module,
        layer: nn.Module,
        images: Tensor,
        targets: Tensor | None,
        head: nn.Linear | None,
        batch_size: int,
    ) -> tuple[LayerCapture, Tensor]:
        fast = head is not None and self.uses_gradients and not self.explains_input
        needs_graph = self.uses_gradients and not fast
        if self.explains_input:
            activations = images.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(activations)
        else:
            with capture_output(layer, as_leaf=needs_graph) as outputs, torch.set_grad_enabled(needs_graph):
                logits = model(images)
            output = _single_output(outputs)
            layout = _layout(model, output, images)
            activations = layout.to_maps(output)
        targets = logits.argmax(dim=1) if targets is None else targets.to(logits.device).view(-1)

        gradients = None
        if fast:
            _check_head(logits, activations, head)
            height, width = activations.shape[-2:]
            # d logit_c / d A[k, i, j] = W[c, k] / (h·w) everywhere: the average pooling spreads
            # the classifier weight evenly over the pixels.
            per_channel = head.weight.detach()[targets] / (height * width)
            gradients = per_channel[:, :, None, None].expand_as(activations)
        elif needs_graph:
            # The target score is the raw logit of the target class (pytorch-grad-cam's
            # ClassifierOutputTarget). Samples are independent in eval mode, so the gradient of
            # the sum gives every sample's own gradient in one backward pass; autograd.grad fills
            # no parameter gradients.
            score = logits.gather(1, targets.view(-1, 1)).sum()
            (gradients,) = torch.autograd.grad(score, activations if self.explains_input else output)
            if not self.explains_input:
                gradients = layout.to_maps(gradients)
        capture = LayerCapture(model, images, activations.detach(), gradients, targets, batch_size)
        return capture, logits.detach()
