"""The MNIST-1D paper's CNN (Greydanus 2020, ConvBase): three Conv1d layers of 25 channels, ~5k params."""

import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes, channels=25):
        super().__init__()
        self.conv1 = nn.Conv1d(input_shape[0], channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(channels * 5, num_classes)

    def forward(self, x):
        h = self.conv1(x).relu()
        h = self.conv2(h).relu()
        h = self.conv3(h).relu()
        return self.linear(h.flatten(1))
