"""The built-in CAM methods. Each overrides one hook of `CAMMethod` (see `augcam.cams.base`).

Semantics follow pytorch-grad-cam (the reference the tests compare against), written for batches
of tensors: A are the target layer's activations (B, C, h, w), G the gradients of each image's
target logit with respect to them, sums "over pixels" run over h and w.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from augcam.cams.base import CAMMethod, LayerCapture, register_cam_method


@register_cam_method
class GradCAM(CAMMethod):
    """Grad-CAM (Selvaraju et al., 2017): channel weight = spatial mean of the gradient."""

    name = "gradcam"
    display_name = "Grad-CAM"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.mean(dim=(2, 3))


@register_cam_method
class GradCAMPlusPlus(CAMMethod):
    """Grad-CAM++ (Chattopadhay et al., 2018), eq. 19 with exp(score) ≈ score: pixel coefficients
    α = G² / (2G² + ΣA · G³), zero where G = 0; channel weight = Σ_pixels α · ReLU(G)."""

    name = "gradcampp"
    display_name = "Grad-CAM++"
    # pytorch-grad-cam's guard in the denominator of α.
    eps = 1e-6

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        squared = gradients.square()
        activation_sums = activations.sum(dim=(2, 3), keepdim=True)
        alpha = squared / (2 * squared + activation_sums * squared * gradients + self.eps)
        alpha = torch.where(gradients != 0, alpha, 0.0)
        return (alpha * torch.relu(gradients)).sum(dim=(2, 3))


@register_cam_method
class HiResCAM(CAMMethod):
    """HiRes-CAM (Draelos & Carin, 2020): the element-wise product G ⊙ A summed over channels,
    without Grad-CAM's spatial averaging of the gradient."""

    name = "hirescam"
    display_name = "HiResCAM"

    def layer_map(self, capture: LayerCapture) -> Tensor:
        return (capture.gradients * capture.activations).sum(dim=1)


@register_cam_method
class XGradCAM(CAMMethod):
    """XGrad-CAM (Fu et al., 2020): channel weight = Σ_pixels G · A / ΣA."""

    name = "xgradcam"
    display_name = "XGrad-CAM"
    eps = 1e-7  # pytorch-grad-cam's guard for an all-zero channel

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        activation_sums = activations.sum(dim=(2, 3), keepdim=True)
        return (gradients * activations / (activation_sums + self.eps)).sum(dim=(2, 3))


@register_cam_method
class LayerCAM(CAMMethod):
    """Layer-CAM (Jiang et al., 2021): ReLU(G) ⊙ A summed over channels."""

    name = "layercam"
    display_name = "LayerCAM"

    def layer_map(self, capture: LayerCapture) -> Tensor:
        return (torch.relu(capture.gradients) * capture.activations).sum(dim=1)


@register_cam_method
class ScoreCAM(CAMMethod):
    """Score-CAM (Wang et al., 2020): no gradients. Every channel, resized to the input (bilinear,
    corners aligned) and min-max scaled to [0, 1], masks the input image; the channel's weight is
    the softmax over channels of the target logits of the masked images. Costs one forward pass
    per channel and image, run `batch_size` masked images at a time over the whole batch."""

    name = "scorecam"
    display_name = "Score-CAM"
    uses_gradients = False
    eps = 1e-8  # pytorch-grad-cam's guard when scaling a constant channel

    def layer_map(self, capture: LayerCapture) -> Tensor:
        activations, images = capture.activations, capture.images
        batch, channels = activations.shape[:2]
        size = tuple(images.shape[-2:])
        per_map = activations.flatten(0, 1)  # row b·C + c is channel c of image b
        image_of_row = torch.arange(batch, device=activations.device).repeat_interleave(channels)
        scores = torch.empty(batch * channels, dtype=activations.dtype, device=activations.device)
        with torch.no_grad():
            # Masks are made per chunk: all of them at once would be C × the input batch in memory.
            for start in range(0, batch * channels, capture.batch_size):
                stop = min(start + capture.batch_size, batch * channels)
                masks = F.interpolate(per_map[start:stop, None], size=size, mode="bilinear", align_corners=True)
                low = masks.amin(dim=(2, 3), keepdim=True)
                high = masks.amax(dim=(2, 3), keepdim=True)
                masks = (masks - low) / (high - low + self.eps)
                rows = image_of_row[start:stop]
                logits = capture.model(images[rows] * masks)
                scores[start:stop] = logits.gather(1, capture.targets[rows, None])[:, 0]
        weights = torch.softmax(scores.view(batch, channels), dim=1)
        return torch.einsum("bc,bchw->bhw", weights, activations)


@register_cam_method
class EigenCAM(CAMMethod):
    """Eigen-CAM (Muhammad & Yasin, 2020): no gradients. The pixels × channels matrix of each
    image's activations, centred per channel, projected on its first right singular vector.

    The sign of a singular vector is arbitrary (LAPACK returns either; pytorch-grad-cam keeps
    whatever it gets). augcam fixes it so that the vector's channel sum is ≥ 0, i.e. the map
    grows with the pixel's total activation (its projection has a non-negative dot product with
    the centred channel sum), which makes maps reproducible across libraries and devices."""

    name = "eigencam"
    display_name = "EigenCAM"
    uses_gradients = False

    def layer_map(self, capture: LayerCapture) -> Tensor:
        # NaN activations count as 0, as in pytorch-grad-cam (infinities are kept).
        activations = torch.where(torch.isnan(capture.activations), 0.0, capture.activations)
        batch, _, height, width = activations.shape
        # float64: the first singular vector is ill-conditioned when the two largest singular
        # values are close (common in barely trained models); float32 SVD moved maps by 2e-5.
        pixels_by_channels = activations.flatten(2).transpose(1, 2).double()
        centred = pixels_by_channels - pixels_by_channels.mean(dim=1, keepdim=True)
        _, _, right = torch.linalg.svd(centred, full_matrices=False)
        direction = right[:, 0, :]
        direction = torch.where(direction.sum(dim=1, keepdim=True) < 0, -direction, direction)
        projection = torch.einsum("bpc,bc->bp", centred, direction)
        return projection.view(batch, height, width).to(activations.dtype)


@register_cam_method
class Saliency(CAMMethod):
    """Vanilla gradient saliency (Simonyan et al., 2014): max over input channels of
    |d target logit / d pixel|, at the input resolution (the target layer is not used).

    Each raw map is divided by its maximum: input gradients of a barely trained network can be
    ~1e-14, far below the absolute 1e-7 guard of `upsample`'s min-max, which would otherwise
    shrink the map instead of scaling it to [0, 1]. An all-zero map stays zero."""

    name = "saliency"
    display_name = "Saliency"
    explains_input = True

    def layer_map(self, capture: LayerCapture) -> Tensor:
        magnitudes = capture.gradients.abs().amax(dim=1)
        peak = magnitudes.amax(dim=(1, 2), keepdim=True)
        return torch.where(peak > 0, magnitudes / peak, 0.0)
