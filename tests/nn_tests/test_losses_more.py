"""BCE with logits, class-weighted cross-entropy and focal loss: float64 gradient checks at
P=1 and P=3 and references in torch (``BCEWithLogitsLoss``, ``CrossEntropyLoss(weight=...)``,
torchvision's ``sigmoid_focal_loss`` written out in autograd: torchvision is not a dependency)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainlab.build import build_loss
from trainlab.config import load_config
from trainlab.errors import ConfigError
from trainlab.gradcheck import check_loss
from trainlab.nn import BCEWithLogits, SigmoidFocalLoss, SoftmaxCrossEntropy

DT = torch.float64
TOL = 1e-6
N, C = 5, 4


def _z(P: int, seed: int = 1, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(P, N, C, generator=torch.Generator().manual_seed(seed), dtype=DT) * scale


def _multi_hot(shape: tuple[int, ...], seed: int = 2) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).to(DT)


def _labels(shape: tuple[int, ...], seed: int = 3) -> torch.Tensor:
    return torch.randint(0, C, shape, generator=torch.Generator().manual_seed(seed))


TARGETS = {
    "multi_hot_shared": lambda P: _multi_hot((N, C)),
    "multi_hot_per_member": lambda P: _multi_hot((P, N, C)),
    "soft_shared": lambda P: torch.rand(N, C, generator=torch.Generator().manual_seed(4), dtype=DT),
    "class_index": lambda P: _labels((N,)),
    "class_index_per_member": lambda P: _labels((P, N)),
}


def _member_target(t: torch.Tensor, i: int, P: int) -> torch.Tensor:
    if not t.is_floating_point():
        t = F.one_hot(t, C).to(DT)
    return t[i] if t.ndim == 3 or (t.ndim == 2 and t.shape[0] == P and t.shape[1] != C) else t


def torchvision_sigmoid_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                                   gamma: float = 2.0) -> torch.Tensor:
    """torchvision.ops.sigmoid_focal_loss (v0.20), reduction="mean", written out line by line."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean()


# ---- BCE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("target", list(TARGETS))
def test_bce_gradcheck(P: int, target: str) -> None:
    loss = BCEWithLogits()
    loss.build(P, dtype=DT)
    assert check_loss(loss, _z(P), TARGETS[target](P)).max_error < TOL


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("scale", [2.0, 1e3])
def test_bce_matches_torch(target: str, scale: float) -> None:
    P = 3
    loss = BCEWithLogits()
    loss.build(P, dtype=DT)
    z, t = _z(P, scale=scale), TARGETS[target](P)
    value, grad = loss.forward(z, t), loss.backward()
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert loss.classification == (not t.is_floating_point())
    for i in range(P):
        zi = z[i].clone().requires_grad_()
        ref = torch.nn.BCEWithLogitsLoss()(zi, _member_target(t, i, P))
        ref.backward()
        torch.testing.assert_close(value[i], ref.detach(), atol=1e-12 * scale, rtol=1e-12)
        torch.testing.assert_close(grad[i], zi.grad, atol=1e-14, rtol=1e-12)


def test_bce_reference_is_the_base_rate_entropy() -> None:
    t = _multi_hot((1000, C))
    q = t.mean(dim=0)
    want = float((-(q * q.log() + (1 - q) * (1 - q).log())).mean())
    assert math.isclose(BCEWithLogits().reference(C, t), want, rel_tol=1e-12)
    # class indices: each unit is positive 1/C of the time
    assert math.isclose(BCEWithLogits().reference(10), -(0.1 * math.log(0.1) + 0.9 * math.log(0.9)), rel_tol=1e-9)


# ---- class-weighted cross-entropy ----------------------------------------------------------------

W3 = [[1.0, 2.0, 0.5, 3.0], [0.2, 1.0, 1.0, 1.0], [5.0, 0.0, 1.0, 2.0]]


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("target", ["class_index", "class_index_per_member", "soft_shared"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_weighted_cross_entropy_gradcheck(P: int, target: str, smoothing: float) -> None:
    loss = SoftmaxCrossEntropy(weight=W3[:P] if P == 3 else W3[0], label_smoothing=smoothing)
    loss.build(P, dtype=DT)
    t = TARGETS[target](P)
    if target == "soft_shared":
        t = t / t.sum(dim=-1, keepdim=True)
    assert check_loss(loss, _z(P), t).max_error < TOL


@pytest.mark.parametrize("target", ["class_index", "class_index_per_member", "soft_shared"])
@pytest.mark.parametrize("smoothing", [0.0, [0.0, 0.1, 0.3]])
@pytest.mark.parametrize("per_member_weights", [False, True])
def test_weighted_cross_entropy_matches_torch(target: str, smoothing, per_member_weights: bool) -> None:
    P = 3
    weights = W3 if per_member_weights else W3[0]
    loss = SoftmaxCrossEntropy(weight=weights, label_smoothing=smoothing)
    loss.build(P, dtype=DT)
    z, t = _z(P, scale=3.0), TARGETS[target](P)
    if target == "soft_shared":
        t = t / t.sum(dim=-1, keepdim=True)
    value, grad = loss.forward(z, t), loss.backward()
    eps = smoothing if isinstance(smoothing, list) else [smoothing] * P
    for i in range(P):
        zi = z[i].clone().requires_grad_()
        ti = t[i] if target == "class_index_per_member" else t
        w = torch.tensor(W3[i] if per_member_weights else W3[0], dtype=DT)
        ref = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=eps[i])(zi, ti)
        ref.backward()
        torch.testing.assert_close(value[i], ref.detach(), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(grad[i], zi.grad, atol=1e-13, rtol=1e-12)


def test_unit_weights_change_nothing() -> None:
    z, t = _z(3), _labels((N,))
    plain, weighted = SoftmaxCrossEntropy(), SoftmaxCrossEntropy(weight=[1.0] * C)
    for loss in (plain, weighted):
        loss.build(3, dtype=DT)
    torch.testing.assert_close(weighted.forward(z, t), plain.forward(z, t), atol=1e-14, rtol=1e-14)
    torch.testing.assert_close(weighted.backward(), plain.backward(), atol=1e-15, rtol=1e-14)


def test_class_weight_errors() -> None:
    with pytest.raises(ConfigError, match="class weights must be finite, >= 0"):
        SoftmaxCrossEntropy(weight=[1.0, -1.0])
    loss = SoftmaxCrossEntropy(weight=[1.0, 2.0])
    loss.build(1, dtype=DT)
    with pytest.raises(ConfigError, match="2 class weights but the logits have 4 classes"):
        loss.forward(_z(1), _labels((N,)))
    loss = SoftmaxCrossEntropy(weight=W3)
    with pytest.raises(ConfigError, match="given for 3 members, the population has 2"):
        loss.build(2, dtype=DT)


# ---- focal loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("target", list(TARGETS))
def test_focal_gradcheck(P: int, target: str) -> None:
    loss = SigmoidFocalLoss(gamma=2.0 if P == 1 else [2.0, 0.5, 0.0], alpha=0.25 if P == 1 else [0.25, 0.5, 0.9])
    loss.build(P, dtype=DT)
    assert check_loss(loss, _z(P), TARGETS[target](P)).max_error < TOL


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("alpha", [[0.25, 0.75, 0.5], None])
def test_focal_matches_torchvision_formula(target: str, alpha) -> None:
    P, gammas = 3, [2.0, 0.5, 0.0]
    loss = SigmoidFocalLoss(gamma=gammas, alpha=alpha)
    loss.build(P, dtype=DT)
    z, t = _z(P, scale=3.0), TARGETS[target](P)
    z[0, 0, :2] = torch.tensor([60.0, -60.0], dtype=DT)  # saturated: p_t -> 1, (1 - p_t)^(gamma-1) guarded
    value, grad = loss.forward(z, t), loss.backward()
    assert torch.isfinite(grad).all()
    for i in range(P):
        zi = z[i].clone().requires_grad_()
        ref = torchvision_sigmoid_focal_loss(zi, _member_target(t, i, P), alpha=-1 if alpha is None else alpha[i],
                                             gamma=gammas[i])
        ref.backward()
        torch.testing.assert_close(value[i], ref.detach(), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(grad[i], zi.grad, atol=1e-13, rtol=1e-10)


def test_focal_with_gamma_0_and_no_alpha_is_bce() -> None:
    z, t = _z(2), _multi_hot((N, C))
    f, b = SigmoidFocalLoss(gamma=0.0, alpha=None), BCEWithLogits()
    for loss in (f, b):
        loss.build(2, dtype=DT)
    torch.testing.assert_close(f.forward(z, t), b.forward(z, t), atol=1e-15, rtol=1e-14)
    torch.testing.assert_close(f.backward(), b.backward(), atol=1e-16, rtol=1e-14)


def test_focal_down_weights_easy_examples() -> None:
    # Lin et al.'s point: with gamma = 2 a well-classified unit (p_t = 0.9) loses 100x of its loss,
    # a hard one (p_t = 0.1) only 1/0.81.
    z = torch.tensor([[[math.log(9.0), math.log(1 / 9.0)]]], dtype=DT)  # p = 0.9, 0.1
    t = torch.tensor([[1.0, 1.0]], dtype=DT)
    fl = SigmoidFocalLoss(gamma=2.0, alpha=None)
    fl.build(1, dtype=DT)
    fl.forward(z, t)
    ce = -torch.log(torch.tensor([0.9, 0.1], dtype=DT))
    per_unit = fl._cache[5][0, 0] * fl._cache[2][0, 0]
    torch.testing.assert_close(per_unit / ce, torch.tensor([0.01, 0.81], dtype=DT), atol=1e-12, rtol=1e-12)


# ---- config -----------------------------------------------------------------------------------------


def test_loss_config_keys() -> None:
    cfg = load_config(None, ["loss.name='cross_entropy'", "loss.class_weights=[1, 2, 3, 4]"])
    loss = build_loss(cfg["loss"])
    assert isinstance(loss, SoftmaxCrossEntropy) and loss.weight.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert isinstance(build_loss(load_config(None, ["loss.name='bce'"])["loss"]), BCEWithLogits)
    cfg = load_config(None, ["loss.name='focal'", "population.size=2", "loss.focal_gamma=[1, 3]",
                             "loss.focal_alpha=0.5"])
    focal = build_loss(cfg["loss"])
    assert isinstance(focal, SigmoidFocalLoss) and focal.gamma == [1.0, 3.0] and focal.alpha == 0.5
    with pytest.raises(ConfigError, match=r"loss.class_weights\[1\] must be >= 0"):
        load_config(None, ["loss.class_weights=[1, -2]"])
    with pytest.raises(ConfigError, match="loss.class_weights must be a non-empty list of numbers"):
        load_config(None, ["loss.class_weights=3"])
