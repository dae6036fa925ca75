"""Lipschitz networks, their certified bound, and an independent empirical check of that bound.

The bound of a composition is the product of the operator norms of its parts (in the same norm on
every intermediate space). The empirical check never trusts that computation: it measures the local
Lipschitz constant (the operator norm of the input Jacobian) at data points and at points found by an
adversarial search, and the largest difference quotient ‖f(x) − f(y)‖/‖x − y‖ that search reaches.
Each of those is a lower bound on the true constant, so none may exceed the certified bound.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from recon.lipschitz.layers import LAYERS, NORMS, GroupSort, operator_norm

ONE_LIPSCHITZ = (GroupSort, nn.ReLU, nn.Flatten, nn.Identity)
"""Modules that are 1-Lipschitz in every ℓp norm (permutations, coordinatewise contractions, reshapes)."""


@dataclass
class MLPConfig:
    """Architecture of a Lipschitz MLP."""

    in_dim: int = 1
    """Input features."""
    widths: tuple[int, ...] = (64, 64)
    """Hidden widths (each a multiple of ``group_size`` for GroupSort)."""
    out_dim: int = 1
    """Output features."""
    layer: str = "bjorck"
    """Linear layer type: 'bjorck' (ℓ2 ≤ 1), 'linf' (ℓ∞ ≤ 1) or 'spectral' (power-iteration baseline)."""
    activation: str = "groupsort"
    """'groupsort' or 'relu'."""
    group_size: int = 2
    """GroupSort group size (2 = MaxMin)."""
    bjorck_iters: int = 20
    """Björck iterations per forward pass."""


def make_layer(kind: str, in_dim: int, out_dim: int, bjorck_iters: int = 20) -> nn.Module:
    """A constrained linear layer of type ``kind`` (one of :data:`recon.lipschitz.layers.LAYERS`)."""
    if kind not in LAYERS:
        raise ValueError(f"unknown layer {kind!r} (use {', '.join(LAYERS)})")
    if kind == "bjorck":
        return LAYERS[kind](in_dim, out_dim, iters=bjorck_iters)
    return LAYERS[kind](in_dim, out_dim)


def make_activation(kind: str, group_size: int = 2) -> nn.Module:
    """A 1-Lipschitz activation: 'groupsort' (with ``group_size``) or 'relu'."""
    if kind == "groupsort":
        return GroupSort(group_size)
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind!r} (use groupsort or relu)")


class LipschitzMLP(nn.Sequential):
    """Constrained linear layers alternating with 1-Lipschitz activations: (n, in_dim) → (n, out_dim)."""

    def __init__(self, config: MLPConfig | None = None):
        self.config = config = config or MLPConfig()
        dims = (config.in_dim, *config.widths, config.out_dim)
        modules: list[nn.Module] = []
        for index, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            modules.append(make_layer(config.layer, a, b, config.bjorck_iters))
            if index < len(dims) - 2:
                modules.append(make_activation(config.activation, config.group_size))
        super().__init__(*modules)

    def linear_layers(self) -> list[nn.Module]:
        """The constrained linear layers, input to output."""
        return [m for m in self if hasattr(m, "effective_weight")]


def module_lipschitz_bound(module: nn.Module, norm: str = "l2") -> float:
    """Upper bound on the Lipschitz constant of ``module`` in ``norm`` (ℓ2 or ℓ∞ on input and output).

    Understands constrained layers (their exact operator norm), plain ``nn.Linear`` (likewise),
    1-Lipschitz activations, and ``nn.Sequential`` compositions (product of the parts). Anything else
    raises, rather than guessing.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} (use l2 or linf)")
    if hasattr(module, "lipschitz_bound"):
        return float(module.lipschitz_bound(norm))
    if isinstance(module, nn.Linear):
        return operator_norm(module.weight, norm)
    if isinstance(module, ONE_LIPSCHITZ):
        return 1.0
    if isinstance(module, nn.Sequential):
        bound = 1.0
        for child in module:
            bound *= module_lipschitz_bound(child, norm)
        return bound
    raise TypeError(f"no Lipschitz bound known for {type(module).__name__}")


@torch.no_grad()
def frozen(module: nn.Module) -> nn.Module:
    """A copy with every constrained layer replaced by a plain ``nn.Linear`` holding its effective weight.

    Same function and same certified bound, no parameters that require gradients, no Björck iterations
    or power iterations in the forward pass: what evaluation, certification and export should run.
    """
    if hasattr(module, "frozen_copy"):
        return module.frozen_copy()
    if hasattr(module, "effective_weight"):
        plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        plain.weight.copy_(module.effective_weight())
        if module.bias is not None:
            plain.bias.copy_(module.bias)
        return plain.requires_grad_(False).eval()
    if isinstance(module, nn.Linear):
        return copy.deepcopy(module).requires_grad_(False).eval()
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(frozen(child) for child in module)).eval()
    if isinstance(module, ONE_LIPSCHITZ):
        return module
    raise TypeError(f"cannot freeze {type(module).__name__}")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _vector_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Row-wise ℓ2 or ℓ∞ norm of a (n, ...) batch."""
    flat = _flat(x)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def input_jacobians(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Jacobians (n, out, in) of ``model`` at each of the (n, ...) inputs (output flattened, input flattened)."""
    x = x.detach()
    shape = x.shape[1:]

    def single(v: torch.Tensor) -> torch.Tensor:
        return model(v.reshape(1, *shape)).reshape(-1)

    jac = torch.func.vmap(torch.func.jacrev(single))(_flat(x))
    return jac


def local_lipschitz(model: nn.Module, x: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Operator norm (n,) of the input Jacobian at each input: σ_max (ℓ2) or max row ℓ1 (ℓ∞).

    For a scalar output this is ‖∇ₓf‖₂ (ℓ2) or ‖∇ₓf‖₁ (ℓ∞, the dual norm).
    """
    with torch.no_grad():
        jac = input_jacobians(model, x).double()
    if norm == "l2":
        return torch.linalg.matrix_norm(jac, ord=2).float()
    return jac.abs().sum(dim=2).amax(dim=1).float()


@dataclass
class EmpiricalLipschitz:
    """Lower bounds on a network's Lipschitz constant, from data and from an adversarial search."""

    max_grad_data: float
    """Largest local constant (Jacobian operator norm) at the data points."""
    max_grad_search: float
    """Largest local constant at the points the search ended on."""
    max_quotient: float
    """Largest ‖f(x) − f(y)‖/‖x − y‖ over the searched pairs."""

    @property
    def value(self) -> float:
        """The largest of the three lower bounds."""
        return max(self.max_grad_data, self.max_grad_search, self.max_quotient)


def _quotients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    return _vector_norm(model(x) - model(y), norm) / _vector_norm(x - y, norm).clamp_min(1e-12)


def empirical_lipschitz(
    model: nn.Module,
    x: torch.Tensor,
    norm: str = "l2",
    *,
    steps: int = 50,
    lr: float = 0.01,
    pair_scale: float = 0.05,
    seed: int = 0,
) -> EmpiricalLipschitz:
    """Lower bounds on the Lipschitz constant of ``model`` around the (n, ...) inputs ``x``.

    The search starts one pair (x_i, x_i + δ_i) per input with a random δ of size ``pair_scale`` and
    runs ``steps`` Adam steps of gradient *ascent* on log ‖f(x) − f(y)‖ − log ‖x − y‖ in both points.
    It runs on a :func:`frozen` copy: same function, no parameter gradients to build.
    (For a piecewise-linear network the gradient of the Jacobian norm itself is zero almost everywhere,
    so ascending the difference quotient is what moves points towards steep regions.)
    """
    model = frozen(model)
    max_data = float(local_lipschitz(model, x, norm).max())
    generator = torch.Generator().manual_seed(seed)
    a = x.detach().clone()
    b = (a + pair_scale * torch.randn(a.shape, generator=generator)).detach()
    a.requires_grad_(True)
    b.requires_grad_(True)
    optimizer = torch.optim.Adam([a, b], lr=lr)
    best = 0.0
    for _ in range(steps):
        q = _quotients(model, a, b, norm)
        best = max(best, float(q.detach().max()))
        objective = -torch.log(q.clamp_min(1e-12)).sum()
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    with torch.no_grad():
        best = max(best, float(_quotients(model, a, b, norm).max()))
    searched = torch.cat([a.detach(), b.detach()])
    max_search = float(local_lipschitz(model, searched, norm).max())
    return EmpiricalLipschitz(max_grad_data=max_data, max_grad_search=max_search, max_quotient=best)


def gradient_norms_through_layers(model: LipschitzMLP, x: torch.Tensor) -> list[float]:
    """Mean ‖∂f/∂h_l‖₂ over inputs, for h_l the input of each linear layer l (l = 0 is the network input).

    For a scalar 1-Lipschitz network that must have |f'| = 1 (e.g. |x|), these must all be 1; with ReLU
    they shrink from the output towards the input, which is the diagnosis of Anil et al. (2019).
    """
    model.eval()
    captured: list[torch.Tensor] = []

    def keep_input(_module, inputs):
        inputs[0].retain_grad()
        captured.append(inputs[0])

    hooks = [layer.register_forward_pre_hook(keep_input) for layer in model.linear_layers()]
    try:
        inputs = x.detach().clone().requires_grad_(True)
        out = model(inputs)
        out.sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
    return [float(_flat(h.grad).norm(dim=1).mean()) for h in captured]
