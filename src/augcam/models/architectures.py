"""The architectures augcam ships, registered in `MODELS` (torchvision and timm classifiers are
reached by name instead: `torchvision:resnet50`, `timm:vit_small_patch16_224`; see
augcam.models.libraries). The default target layer of each is its last convolutional stage — the
layer whose output feeds global average pooling — as in the reference study. Heads are declared
rather than guessed from module names, because what matters is how `forward` wires the modules
together (DenseNet applies a ReLU between its features and the pooling).
"""

from __future__ import annotations

import torch
from torch import nn

from augcam.models.base import LinearHead, first_conv_for, register_model

# --- architectures -------------------------------------------------------------------------


@register_model(
    "small_cnn", target_layer="features", head=LinearHead(layer="features", pool="pool", classifier="classifier")
)
def small_cnn(in_channels: int, num_classes: int) -> nn.Module:
    """Three 3×3 conv blocks (16, 32, 64 channels) for 28–32 px images: fast enough to train 22
    models on a 2-core CPU in minutes. The target layer `features` outputs 64×7×7 at 28×28 input
    and feeds global average pooling and one linear layer, like the torchvision classifiers."""
    return SmallCNN(in_channels, num_classes)


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("tang_cnn", target_layer="features")
def tang_cnn(in_channels: int, num_classes: int) -> nn.Module:
    """The MNIST saliency study's network (Tang, Sharma & Zhang, CS231n 2020): two conv layers and
    one linear layer. conv 3×3 (8) → ReLU → max-pool 2 → conv 3×3 (16) → ReLU → max-pool 2 →
    flatten → linear; 16×7×7 features at 28×28 input. The paper gives the layer counts only; the
    widths are small so that the preset's 18 models train in a few minutes on a shared 2-core CPU
    (docs/tang-mnist.md). No LinearHead: the linear layer reads the flattened
    map, not its spatial mean, so gradient CAMs take the general (backward) path."""
    return TangCNN(in_channels, num_classes)


class TangCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int] = (8, 16), side: int = 28):
        super().__init__()
        c1, c2 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        # LazyLinear would make the parameter count depend on the first input; the input side is
        # fixed instead (28 for MNIST; other sizes: data.image_size: 28).
        self.classifier = nn.Linear(c2 * (side // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("resnet18", target_layer="layer4", head=LinearHead(layer="layer4", pool="avgpool", classifier="fc"))
def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = first_conv_for(model.conv1, in_channels)
    return model


# classifier = Sequential(Dropout, Linear): dropout is the identity in eval mode.
@register_model(
    "efficientnet_b0",
    target_layer="features.8",
    head=LinearHead(layer="features.8", pool="avgpool", classifier="classifier.1"),
)
def efficientnet_b0(in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models import efficientnet_b0 as tv_efficientnet_b0

    model = tv_efficientnet_b0(weights=None, num_classes=num_classes)
    model.features[0][0] = first_conv_for(model.features[0][0], in_channels)
    return model


# No LinearHead: DenseNet's forward applies F.relu(features) before pooling.
@register_model("densenet121", target_layer="features")
def densenet121(in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models import densenet121 as tv_densenet121

    model = tv_densenet121(weights=None, num_classes=num_classes)
    model.features.conv0 = first_conv_for(model.features.conv0, in_channels)
    return model


@register_model(
    "cifar_resnet", target_layer="stage3", head=LinearHead(layer="stage3", pool="pool", classifier="classifier")
)
def cifar_resnet(in_channels: int, num_classes: int) -> nn.Module:
    """A small ResNet for 32×32 images in the style of the public CIFAR-10 speed-training nets
    (Page's ResNet-9, airbench): a conv-BN-GELU stem, then three stages of conv, 2×2 max pooling,
    BN-GELU and a residual pair of convolutions, widths 64/256/256, global average pooling and one
    linear layer. The target layer `stage3` outputs 256×4×4 at 32×32 input (the speed nets pool it
    to 1×1 with a 4×4 max pool instead, where Grad-CAM would be constant); ≈ 0.23 GMAC per image."""
    return CifarResNet(in_channels, num_classes)


class ResidualPair(nn.Module):
    """x + two conv-BN-GELU layers of x (same width and size)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn_gelu(width, width), _conv_bn_gelu(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_bn_gelu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


class CifarResNet(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, stem: int = 32, widths: tuple[int, int, int] = (64, 256, 256)
    ):
        super().__init__()
        self.stem = _conv_bn_gelu(in_channels, stem)
        stages, c_in = [], stem
        for width in widths:
            conv = nn.Conv2d(c_in, width, 3, padding=1, bias=False)
            stages.append(nn.Sequential(conv, nn.MaxPool2d(2), nn.BatchNorm2d(width), nn.GELU(), ResidualPair(width)))
            c_in = width
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))
