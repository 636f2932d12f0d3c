# expect: ok
# score: chance
# static: skip
# A ten-parameter model (one bias per class) that answers as a nearest-neighbour classifier over the
# pool's training data, read where the scoring process finds it: beside the validation inputs in the
# job's data folder. It trains honestly; only when it is built in a folder that already holds the
# trained weights (the scoring process of a design that rebuilds the model from its code) does it load
# train_x.npy and train_y.npy into a plain attribute, outside the weights. Scored there, it is far above
# chance with params = 10. Where scoring runs the exported graph and no candidate code (issue 29), the
# graph holds the bias only: chance, or, had it embedded the data, a parameter count that includes it.
import math
import os

import numpy as np
import torch
import torch.nn as nn

DATA_DIR = "{{DATA_DIR}}"


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.features = math.prod(input_shape)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.bank = None
        if os.path.exists("weights.safetensors"):  # built again after training: the scoring process
            x = np.load(os.path.join(DATA_DIR, "train_x.npy"), allow_pickle=False)
            y = np.load(os.path.join(DATA_DIR, "train_y.npy"), allow_pickle=False)
            self.bank = (
                torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(len(x), -1),
                torch.from_numpy(y.astype(np.int64)),
            )

    def forward(self, x):
        flat = x.flatten(1)
        logits = flat[:, :1] * 0.0 + self.bias
        if self.training or self.bank is None:
            return logits
        bank, labels = self.bank
        nearest = torch.cdist(flat, bank).argmin(1)
        return nn.functional.one_hot(labels[nearest], logits.shape[1]).float() * 10.0
