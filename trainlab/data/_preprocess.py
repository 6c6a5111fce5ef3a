"""Input preprocessing fitted on the training split: min-max, standardization, whitening.

Every preprocessor follows the same contract:

- ``fit(x)`` computes its statistics from the *training* split only and returns
  ``self``; ``transform(x)`` applies them to any split (train, val, test, new data)
  without refitting, so no information leaks from val/test into training.
- ``x`` has shape ``(N, ...)``: flat ``(N, D)`` or images ``(N, C, H, W)``. Statistics
  are per feature of the flattened ``(N, D)`` view; the output has the input's shape
  (except PCA whitening, which returns ``(N, k)`` components) and the input's float
  dtype (integer input becomes float32). Statistics are computed in float64.
- Settings are constructor arguments, stored verbatim (``options()``); fitted state
  lives apart in attributes with a trailing underscore. ``state_dict()`` returns that
  state as plain tensors (for safetensors) and Python numbers (for JSON);
  ``make_preprocessor(name, **options).load_state_dict(state)`` restores it.

Where trainlab's conventions differ from others':

- standardize uses the population standard deviation (divide by N, like
  scikit-learn's ``StandardScaler``, unlike ``torch.std``'s default N - 1).
- A feature that is constant on the training split (range or std <= ``eps``, many
  MNIST border pixels are always 0) maps to 0 for *every* split. Flooring the
  divisor at eps instead would turn a test pixel that differs from the constant by 1
  into 1/eps = 1e8.
- Nothing is clipped: test data outside the training range goes outside [0, 1].
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch

from trainlab.errors import CheckpointError, DataError

__all__ = [
    "Preprocessor",
    "Identity",
    "MinMax",
    "MinMaxPerFeature",
    "Standardize",
    "PCAWhiten",
    "ZCAWhiten",
    "ChannelStandardize",
    "PREPROCESSORS",
    "make_preprocessor",
]

StateValue = torch.Tensor | float | int


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


class Preprocessor:
    """Base class: validates inputs, flattens to ``(N, D)``, keeps the fitted state.

    Subclasses set ``name``, implement ``_fit(flat64)`` (store state from a float64
    ``(N, D)`` training matrix) and ``_transform(flat)`` (map an ``(N, D)`` matrix in
    the caller's dtype), and list their state keys in ``_state_keys``.
    """

    name: ClassVar[str] = ""
    #: False when the output is not laid out like the input (PCA's components).
    keeps_shape: ClassVar[bool] = True
    _state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.num_features_: int | None = None

    # -- settings -------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The constructor arguments, as given (JSON-ready)."""
        params = inspect.signature(type(self).__init__).parameters
        return {key: getattr(self, key) for key in params if key != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"

    # -- fitting --------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.num_features_ is not None

    def fit(self, x: torch.Tensor) -> Preprocessor:
        """Compute the statistics from ``x`` (the training split, ``(N, ...)``, N >= 1)."""
        if x.dim() < 2:
            raise DataError(f"{self.name}: expected x of shape (N, ...) with N samples, got {tuple(x.shape)}")
        if len(x) == 0:
            raise DataError(f"{self.name}: cannot fit on 0 samples; the training split is empty")
        flat = x.reshape(len(x), -1).to(torch.float64)
        self._fit(flat)
        self.num_features_ = flat.shape[1]
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the fitted statistics to ``x`` (any split); never refits."""
        if not self.is_fitted:
            raise RuntimeError(f"{self.name} preprocessor is not fitted; call fit(train_x) first")
        x = _as_float(x)
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.num_features_:
            raise DataError(
                f"{self.name}: x has {flat.shape[1]} features per sample (shape {tuple(x.shape)}); "
                f"the preprocessor was fitted on {self.num_features_}"
            )
        out = self._transform(flat)
        return out.reshape(x.shape) if self.keeps_shape else out

    def fit_transform(self, x: torch.Tensor) -> torch.Tensor:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def output_features(self) -> int:
        """Features per sample after ``transform`` (fitted preprocessors only)."""
        if self.num_features_ is None:
            raise RuntimeError(f"{self.name} preprocessor is not fitted; call fit(train_x) first")
        return self.num_features_

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, StateValue]:
        """Fitted state: tensors (for safetensors) and Python numbers (for JSON)."""
        if self.num_features_ is None:
            raise RuntimeError(f"{self.name} preprocessor is not fitted; nothing to save")
        state: dict[str, StateValue] = {"num_features": self.num_features_}
        for key in self._state_keys:
            value = getattr(self, key + "_")
            state[key] = value.detach().clone() if isinstance(value, torch.Tensor) else value
        return state

    def load_state_dict(self, state: dict[str, StateValue]) -> Preprocessor:
        """Restore the state ``state_dict`` returned; returns ``self``."""
        expected = {"num_features", *self._state_keys}
        if set(state) != expected:
            raise CheckpointError(
                f"{self.name} preprocessor state has keys {sorted(state)}; expected {sorted(expected)}"
            )
        for key in self._state_keys:
            value = state[key]
            if isinstance(getattr(self, key + "_"), float):  # a scalar statistic (JSON side)
                value = float(value)
            elif isinstance(value, torch.Tensor):
                value = value.detach().to(torch.float64).clone()
            else:
                raise CheckpointError(
                    f"{self.name} preprocessor state {key!r} must be a tensor, got {type(value).__name__}"
                )
            setattr(self, key + "_", value)
        self.num_features_ = int(state["num_features"])
        self._after_load()
        return self

    def _after_load(self) -> None:
        """Recompute derived quantities after ``load_state_dict``."""

    # -- subclass hooks -------------------------------------------------------------
    def _fit(self, flat: torch.Tensor) -> None:
        raise NotImplementedError

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _positive(name: str, option: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise DataError(f"{name}: {option} must be a positive finite number, got {option}={value!r}")
    return value


def _safe_inverse(denominator: torch.Tensor, eps: float) -> torch.Tensor:
    """1/d where d > eps, else 0: a feature constant on train maps to 0 everywhere."""
    return torch.where(denominator > eps, 1.0 / denominator.clamp_min(eps), torch.zeros_like(denominator))


class Identity(Preprocessor):
    """``"none"``: the raw values as floats (MNIST pixels stay 0..255)."""

    name = "none"

    def _fit(self, flat: torch.Tensor) -> None:
        pass

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        return flat


class MinMax(Preprocessor):
    """``"minmax"``: ``(x - min) / (max - min)`` with the training split's global min and max.

    One min and one max over all pixels (for MNIST 0 and 255, so this is x/255), which
    keeps the relative brightness of pixels. Training data lands in [0, 1]; other
    splits are not clipped. If ``max - min <= eps`` everything maps to 0.
    For one min and max per feature use ``"minmax-feature"``.
    """

    name = "minmax"
    _state_keys = ("min", "max")

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = _positive(self.name, "eps", eps)
        self.min_: float = 0.0
        self.max_: float = 1.0

    def _fit(self, flat: torch.Tensor) -> None:
        self.min_ = float(flat.min())
        self.max_ = float(flat.max())

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        span = self.max_ - self.min_
        inverse = 1.0 / span if span > self.eps else 0.0
        return (flat - self.min_) * inverse


class MinMaxPerFeature(Preprocessor):
    """``"minmax-feature"``: ``(x_j - min_j) / (max_j - min_j)`` per feature j.

    A feature whose training range is <= ``eps`` (a pixel that is always 0) maps to 0.
    """

    name = "minmax-feature"
    _state_keys = ("min", "range")

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = _positive(self.name, "eps", eps)
        self.min_: torch.Tensor | None = None
        self.range_: torch.Tensor | None = None

    def _fit(self, flat: torch.Tensor) -> None:
        self.min_ = flat.amin(dim=0)
        self.range_ = flat.amax(dim=0) - self.min_

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        assert self.min_ is not None and self.range_ is not None
        scale = _safe_inverse(self.range_, self.eps)
        return (flat - self.min_.to(flat)) * scale.to(flat)


class Standardize(Preprocessor):
    """``"standardize"``: ``(x_j - mean_j) / std_j`` per feature j, from the training split.

    ``std_j`` is the population standard deviation (divide by N). A feature with
    ``std_j <= eps`` (constant on train) maps to 0 on every split.
    """

    name = "standardize"
    _state_keys = ("mean", "std")

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = _positive(self.name, "eps", eps)
        self.mean_: torch.Tensor | None = None
        self.std_: torch.Tensor | None = None

    def _fit(self, flat: torch.Tensor) -> None:
        self.mean_ = flat.mean(dim=0)
        self.std_ = flat.std(dim=0, correction=0)

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        assert self.mean_ is not None and self.std_ is not None
        scale = _safe_inverse(self.std_, self.eps)
        return (flat - self.mean_.to(flat)) * scale.to(flat)


class ChannelStandardize(Preprocessor):
    """``"standardize-channel"``: ``(x_c - mean_c) / std_c`` per colour channel c (RGB normalization).

    One mean and one standard deviation per channel, over every training image and pixel
    position (population std, divide by ``N*H*W``) -- the usual normalization of colour
    images (torchvision's ``Normalize(mean, std)`` with the training set's statistics),
    which keeps the spatial structure that per-pixel standardization would flatten out.
    Images ``(N, C, H, W)`` give the channels; flat channel-major rows ``(N, C*H*W)``
    need ``channels``. A channel with ``std_c <= eps`` maps to 0.
    """

    name = "standardize-channel"
    _state_keys = ("mean", "std")

    def __init__(self, eps: float = 1e-8, channels: int | None = None) -> None:
        super().__init__()
        self.eps = _positive(self.name, "eps", eps)
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise DataError(f"{self.name}: channels must be an integer >= 1 or None, got channels={channels!r}")
        self.channels = channels
        self.mean_: torch.Tensor | None = None
        self.std_: torch.Tensor | None = None
        self._fit_channels: int | None = None

    def fit(self, x: torch.Tensor) -> Preprocessor:
        C = self.channels if self.channels is not None else (x.shape[1] if x.dim() >= 3 else None)
        if C is None:
            raise DataError(f"{self.name}: needs images (N, C, H, W), or channels=C for flat rows; got x of shape "
                            f"{tuple(x.shape)}")
        if x.dim() >= 2 and x[0].numel() % C:
            raise DataError(f"{self.name}: {x[0].numel()} values per sample do not split into {C} channels")
        self._fit_channels = C
        return super().fit(x)

    def _fit(self, flat: torch.Tensor) -> None:
        assert self._fit_channels is not None  # set by fit() just before
        per_channel = flat.reshape(len(flat), self._fit_channels, -1)  # channel-major, as images are stored
        self.mean_ = per_channel.mean(dim=(0, 2))
        self.std_ = per_channel.std(dim=(0, 2), correction=0)

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        assert self.mean_ is not None and self.std_ is not None
        scale = _safe_inverse(self.std_, self.eps)
        per_channel = flat.reshape(len(flat), len(self.mean_), -1)
        out = (per_channel - self.mean_.to(flat)[:, None]) * scale.to(flat)[:, None]
        return out.reshape(flat.shape)


class _Whiten(Preprocessor):
    """Shared fit for PCA and ZCA whitening.

    On the flattened training data scaled to ``z = x / scale`` (``scale=255`` puts
    MNIST pixels in [0, 1], the units ``eps`` is meant for): mean ``mu``, covariance
    ``C = (z - mu)^T (z - mu) / N`` (population), and its eigendecomposition
    ``C = U diag(lam) U^T`` in float64 (eigenvalues descending, rounding negatives
    clipped to 0). ``eps`` is added to every eigenvalue before dividing by its square
    root: MNIST has many pixels with zero variance (lam = 0) and many tiny
    eigenvalues that are mostly noise; without eps they would be divided by ~0 and
    blown up. With eps the whitened training covariance is
    ``diag(lam / (lam + eps))``: ~1 for directions with variance >> eps, ~0 for the
    rest.
    """

    _state_keys = ("mean", "eigenvalues", "eigenvectors")

    def __init__(self, eps: float = 1e-2, scale: float = 255.0) -> None:
        super().__init__()
        self.eps = _positive(self.name, "eps", eps)
        self.scale = _positive(self.name, "scale", scale)
        self.mean_: torch.Tensor | None = None
        self.eigenvalues_: torch.Tensor | None = None
        self.eigenvectors_: torch.Tensor | None = None
        self.matrix_: torch.Tensor | None = None

    def _fit(self, flat: torch.Tensor) -> None:
        z = flat / self.scale
        self.mean_ = z.mean(dim=0)
        centered = z - self.mean_
        covariance = centered.T @ centered / len(z)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        # eigh returns ascending order; largest variance first is the PCA convention.
        self.eigenvalues_ = eigenvalues.flip(0).clamp_min(0.0)
        self.eigenvectors_ = eigenvectors.flip(1)
        self.matrix_ = self._matrix()

    def _after_load(self) -> None:
        self.matrix_ = self._matrix()

    def _matrix(self) -> torch.Tensor:
        raise NotImplementedError

    def _transform(self, flat: torch.Tensor) -> torch.Tensor:
        assert self.mean_ is not None and self.matrix_ is not None
        centered = flat / self.scale - self.mean_.to(flat)
        return centered @ self.matrix_.to(flat)


class PCAWhiten(_Whiten):
    """``"pca-whiten"``: rotate onto the principal axes, then divide by ``sqrt(lam + eps)``.

    ``y = (z - mu) @ U_k diag(1 / sqrt(lam_k + eps))`` with the ``n_components`` leading
    eigenvectors (all D when ``None``). The output is ``(N, k)`` component scores, not
    an image. See :class:`_Whiten` for ``z``, ``scale`` and ``eps``.
    """

    name = "pca-whiten"
    keeps_shape = False

    def __init__(self, eps: float = 1e-2, scale: float = 255.0, n_components: int | None = None) -> None:
        super().__init__(eps=eps, scale=scale)
        if n_components is not None and (
            isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1
        ):
            raise DataError(
                f"{self.name}: n_components must be a positive integer or None, got n_components={n_components!r}"
            )
        self.n_components = n_components

    def _fit(self, flat: torch.Tensor) -> None:
        if self.n_components is not None and self.n_components > flat.shape[1]:
            raise DataError(
                f"{self.name}: n_components={self.n_components} exceeds the {flat.shape[1]} features of x"
            )
        super()._fit(flat)

    def _matrix(self) -> torch.Tensor:
        assert self.eigenvalues_ is not None and self.eigenvectors_ is not None
        k = self.n_components or len(self.eigenvalues_)
        return self.eigenvectors_[:, :k] / torch.sqrt(self.eigenvalues_[:k] + self.eps)

    def output_features(self) -> int:
        super().output_features()
        assert self.num_features_ is not None
        return self.n_components or self.num_features_


class ZCAWhiten(_Whiten):
    """``"zca-whiten"``: PCA whitening rotated back, ``W = U diag(1 / sqrt(lam + eps)) U^T``.

    ``y = (z - mu) @ W``. W is symmetric, and of all whitening matrices (``Q W`` for any
    rotation Q) it moves the data least, ``E||y - (z - mu)||^2`` is smallest: whitened
    images still look like images (edges enhanced), so the output keeps the input's
    shape. See :class:`_Whiten` for ``z``, ``scale`` and ``eps``.
    """

    name = "zca-whiten"

    def _matrix(self) -> torch.Tensor:
        assert self.eigenvalues_ is not None and self.eigenvectors_ is not None
        u = self.eigenvectors_
        return (u / torch.sqrt(self.eigenvalues_ + self.eps)) @ u.T


PREPROCESSORS: dict[str, type[Preprocessor]] = {
    cls.name: cls for cls in (Identity, MinMax, MinMaxPerFeature, Standardize, PCAWhiten, ZCAWhiten,
                              ChannelStandardize)
}


def make_preprocessor(name: str, **options: Any) -> Preprocessor:
    """A new, unfitted preprocessor by name: ``"none"``, ``"minmax"``, ``"minmax-feature"``,
    ``"standardize"``, ``"pca-whiten"``, ``"zca-whiten"``, ``"standardize-channel"``; ``options`` go to its
    constructor.
    """
    try:
        cls = PREPROCESSORS[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown preprocessing {name!r}; allowed: {', '.join(PREPROCESSORS)}"
        ) from None
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(
            f"unknown option {', '.join(unknown)} for preprocessing {name!r}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return cls(**options)
