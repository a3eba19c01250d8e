"""ResNet-18/34/50/101 in torchvision's exact layout, in plain torch.

torchvision cannot be a dependency (no CPU build of it imports here), yet its
ImageNet ResNets are what users fine-tune most. These definitions give every
module torchvision's name (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ``fc``
...) and every tensor its shape, so ``torch.save(torchvision.models.resnet50(
weights=...).state_dict(), path)`` loads here with ``strict=True``. Bottleneck
blocks stride on their 3x3 convolution (torchvision's "ResNet v1.5"). Only what
loading those files needs is here: no groups, width or dilation options.
"""

from __future__ import annotations

import torch
from torch import nn

from autovision.resources import ResNetArchitecture

IMAGENET_CLASSES = 1000
_STEM_WIDTH = 64
_LAYER_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a skip connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision), 1x1 expand by four, and a skip connection (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        result: torch.Tensor = self.relu(out + identity)
        return result


# Per architecture: the block and the number of blocks in layer1..layer4 (torchvision's resnetNN()).
RESNET_LAYOUTS: dict[ResNetArchitecture, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """torchvision's ResNet: stem (conv1, bn1, relu, maxpool), layer1..layer4, avgpool, then ``fc`` on the features."""

    def __init__(self, architecture: ResNetArchitecture, num_classes: int = IMAGENET_CLASSES) -> None:
        super().__init__()
        if architecture not in RESNET_LAYOUTS:
            raise ValueError(f"{architecture!r} is not offered: choose one of {', '.join(RESNET_LAYOUTS)}")
        block, depths = RESNET_LAYOUTS[architecture]
        self.conv1 = nn.Conv2d(3, _STEM_WIDTH, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = _STEM_WIDTH
        layers = []
        for index, (width, depth) in enumerate(zip(_LAYER_WIDTHS, depths, strict=True)):
            stride = 1 if index == 0 else 2
            out_channels = width * block.expansion
            downsample = None
            if stride != 1 or channels != out_channels:
                downsample = nn.Sequential(
                    nn.Conv2d(channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
                )
            blocks = [block(channels, width, stride, downsample)]
            blocks += [block(out_channels, width, 1, None) for _ in range(depth - 1)]
            layers.append(nn.Sequential(*blocks))
            channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.features = channels
        self.fc: nn.Module = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        out: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return out
