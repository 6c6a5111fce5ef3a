"""Sequential's in-place plan (issue 20): a ReLU overwrites the fresh output of the layer before it and the
fresh input gradient of the layer after it -- the same numbers, bit for bit, as the out-of-place layers,
and never a tensor that someone else holds (the data, the caller's gradient, an observer's capture)."""

from __future__ import annotations

import torch

from trainlab import nn
from trainlab.nn._module import promises
from trainlab.optim import SGD, Momentum
from trainlab.train._layer_stats import capture, named_modules


def _mlp(P: int = 1, *, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    m = nn.Sequential([nn.Linear(6, 8, init="he_normal"), nn.ReLU(), nn.Linear(8, 8, init="he_normal"), nn.ReLU(),
                       nn.Linear(8, 3, init="he_normal")])
    m.build((6,), P)
    return m


def _bn_mlp(P: int = 1, *, reference: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    bn = nn.BatchNorm()
    bn.reference = reference
    m = nn.Sequential([nn.Linear(6, 8, init="he_normal"), bn, nn.ReLU(), nn.Linear(8, 3, init="he_normal")])
    m.build((6,), P)
    return m


def _convnet(P: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential([nn.Conv2d(1, 3, 3, init="he_normal"), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                       nn.Linear(None, 4, init="he_normal"), nn.ReLU(), nn.Linear(None, 3, init="he_normal")])
    m.build((1, 8, 8), P)
    return m


def _out_of_place(m: nn.Sequential) -> nn.Sequential:
    m._in_place_fwd, m._in_place_bwd = {}, {}
    return m


def test_the_plan_pairs_relu_with_layers_that_promise_fresh_tensors() -> None:
    m = _mlp()
    assert sorted(m._in_place_fwd) == [1, 3] and sorted(m._in_place_bwd) == [1, 3]
    c = _convnet()
    # conv -> ReLU, pool -> ReLU, Linear -> ReLU in the forward; in the backward a ReLU's gradient comes from
    # the layer after it: the pool's (fresh), the ReLU's after the pool (not a promise), Flatten's (a view)
    assert sorted(c._in_place_fwd) == [1, 3, 6]
    assert sorted(c._in_place_bwd) == [1, 6]
    # a ReLU first in the chain would overwrite the data; after BatchNorm (which keeps its output) it may not
    first = nn.Sequential([nn.ReLU(), nn.Linear(4, 2)])
    first.build((4,), 1)
    bn = nn.Sequential([nn.Linear(4, 4), nn.BatchNorm(affine=False), nn.ReLU(), nn.Linear(4, 2)])
    bn.build((4,), 1)
    assert first._in_place_fwd == {} and 2 not in bn._in_place_fwd
    bn_affine = _bn_mlp()
    assert sorted(bn_affine._in_place_fwd) == [2] and sorted(bn_affine._in_place_bwd) == [2]


def test_a_subclass_that_overrides_forward_inherits_no_promise() -> None:
    class Keeps(nn.Linear):
        def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
            self.kept = super().forward(x, training=training)
            return self.kept

    assert promises(nn.Linear(2, 2), "forward", "fresh_output")
    assert promises(nn.DropConnectLinear(2, 2, p=0.5), "forward", "fresh_output")  # only its weight differs
    assert not promises(Keeps(2, 2), "forward", "fresh_output")
    assert promises(Keeps(2, 2), "backward", "fresh_input_grad")  # backward is Linear's own
    m = nn.Sequential([Keeps(3, 3), nn.ReLU(), nn.Linear(3, 2)])
    m.build((3,), 1)
    x = torch.randn(1, 5, 3)
    m.forward(x, training=True)
    assert bool((m.layers[0].kept < 0).any())  # what it kept is its own output, not the ReLU's


def _train(m: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[torch.Tensor]:
    opt = Momentum(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    loss = nn.SoftmaxCrossEntropy()
    losses = []
    with torch.no_grad():
        for _ in range(steps):
            losses.append(loss.forward(m.forward(x, training=True), y))
            m.backward(loss.backward())
            opt.step()
    return losses + [p.data.clone() for p in m.parameters()] + [p.grad.clone() for p in m.parameters()]


def test_in_place_training_is_bit_for_bit_the_out_of_place_training() -> None:
    for P in (1, 3):
        x = torch.randn(1, 16, 6, generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(2))
        fast, slow = _train(_mlp(P), x, y, 5), _train(_out_of_place(_mlp(P)), x, y, 5)
        assert all(torch.equal(a, b) for a, b in zip(fast, slow))
        xc = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
        fast, slow = _train(_convnet(P), xc, y, 3), _train(_out_of_place(_convnet(P)), xc, y, 3)
        assert all(torch.equal(a, b) for a, b in zip(fast, slow))
        for reference in (False, True):  # BatchNorm's native kernels and its reference formulas
            fast = _train(_bn_mlp(P, reference=reference), x, y, 4)
            slow = _train(_out_of_place(_bn_mlp(P, reference=reference)), x, y, 4)
            assert all(torch.equal(a, b) for a, b in zip(fast, slow))


def test_the_data_and_the_callers_gradient_are_never_overwritten() -> None:
    m = nn.Sequential([nn.ReLU(), nn.Linear(4, 4), nn.ReLU()])
    m.build((4,), 1)
    x = torch.randn(1, 5, 4)
    x0 = x.clone()
    m.forward(x, training=True)
    assert torch.equal(x, x0)
    g = torch.randn(1, 5, 4)
    g0 = g.clone()
    m.backward(g)  # the last ReLU gets the caller's gradient: out of place
    assert torch.equal(g, g0)


def test_a_layer_list_changed_after_build_runs_out_of_place() -> None:
    m = _mlp()
    m.layers[0] = nn.Identity()  # no longer a Linear: its "output" is the caller's data
    x = torch.randn(1, 4, 8)
    x0 = x.clone()
    m.forward(x, training=False)
    assert torch.equal(x, x0)


def test_an_observer_sees_the_pre_activations_it_captured() -> None:
    m = _mlp()
    x = torch.randn(32, 6)
    layers = [(path, layer) for path, layer in named_modules(m) if path]
    seen = capture(m, x, layers, training=False)
    pre = seen[layers[0][0]][1]  # the first Linear's output
    assert bool((pre < 0).any()), "the ReLU after it overwrote the observer's capture"
    assert torch.equal(seen[layers[1][0]][1], torch.relu(pre))


def test_weight_decay_leaves_the_gradient_as_the_backward_left_it() -> None:
    m = _mlp(2)
    opt = SGD(m.parameters(), lr=0.1, weight_decay=[1e-2, 0.0])
    loss = nn.SoftmaxCrossEntropy()
    x, y = torch.randn(1, 8, 6), torch.randint(0, 3, (8,))
    with torch.no_grad():
        for _ in range(2):
            loss.forward(m.forward(x, training=True), y)
            m.backward(loss.backward())
            grads = [p.grad.clone() for p in m.parameters()]
            before = [p.data.clone() for p in m.parameters()]
            opt.step()
            for p, g, w in zip(m.parameters(), grads, before):
                assert torch.equal(p.grad, g)
                wd = torch.tensor([1e-2, 0.0]).view(2, *[1] * (w.ndim - 1)) if p.decay else torch.zeros(1)
                expected = w.addcmul(torch.addcmul(g, wd, w) if p.decay else g, torch.full_like(wd, 0.1), value=-1.0)
                assert torch.equal(p.data, expected)
