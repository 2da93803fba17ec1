"""Teacher and student: the same shape, different widths.

A strided convolutional trunk; class logits from average- and max-pooled
deep features; a coarse heatmap (one channel per finding) at 1/8 of the
input from the 1/8 features plus the upsampled 1/16 ones.
"""
import torch
from torch import nn


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class Net(nn.Module):
    def __init__(self, widths, findings=3):
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(nn.Conv2d(1, w0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w0),
                                  nn.ReLU(inplace=True))
        self.b1, self.b2, self.b3, self.b4 = block(w0, w1), block(w1, w2), block(w2, w3), block(w3, w4)
        self.heat = nn.Sequential(nn.Conv2d(w2 + w3, w2, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(w2, findings, 1))
        self.classify = nn.Linear(2 * w4 + findings, findings)

    def forward(self, x):
        x = self.stem(x)              # 1/2
        x = self.b1(x)                # 1/4
        f8 = self.b2(x)               # 1/8  -> heatmap grid
        f16 = self.b3(f8)             # 1/16
        f32 = self.b4(f16)            # 1/32
        up = nn.functional.interpolate(f16, scale_factor=2.0, mode="nearest")
        heat = self.heat(torch.cat([f8, up], 1))
        pooled = torch.cat([f32.mean(dim=(2, 3)), f32.amax(dim=(2, 3)), heat.amax(dim=(2, 3))], 1)
        return self.classify(pooled), heat


TEACHER = (16, 32, 64, 128, 256)
STUDENT = (8, 16, 32, 64, 96)


def teacher():
    return Net(TEACHER)


def student():
    return Net(STUDENT)


def params(model):
    return sum(p.numel() for p in model.parameters())


class Exported(nn.Module):
    """What goes into ONNX: logits, and the heatmap as probabilities."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        logits, heat = self.net(x)
        return logits, torch.sigmoid(heat)
