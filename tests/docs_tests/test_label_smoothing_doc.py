"""docs/augmentation.md's two label-smoothing conventions, as numbers from the loss itself."""

from __future__ import annotations

import torch

from trainlab.nn import SoftmaxCrossEntropy


def target_of(eps: float, K: int = 10) -> torch.Tensor:
    """The target the loss trains towards: dL/dz = (softmax(z) - t) / N, so t = softmax(z) - N dL/dz."""
    loss = SoftmaxCrossEntropy(label_smoothing=eps)
    loss.build(1, dtype=torch.float64)
    z = torch.zeros(1, 1, K, dtype=torch.float64)
    loss.forward(z, torch.tensor([3]))
    return (torch.softmax(z, -1) - loss.backward())[0, 0]


def test_trainlab_smooths_to_0_91_at_eps_0_1_and_the_notes_0_9_is_eps_k_over_k_minus_1() -> None:
    t = target_of(0.1)
    assert abs(float(t[3]) - 0.91) < 1e-12 and abs(float(t[0]) - 0.01) < 1e-12
    t = target_of(0.1 * 10 / 9)
    assert abs(float(t[3]) - 0.9) < 1e-12 and abs(float(t[0]) - 0.1 / 9) < 1e-12
