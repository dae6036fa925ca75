"""Adam for the fit: torch.optim.Adam's update, bit for bit, without torch.optim.

Constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` (its step functions are wrapped to
disable the compiler), about 1.5 s on the 2-core machine: 5 % of a default ``recon fit``, paid again by
every process and every test that fits. The fit needs plain Adam only, so this is that update written out:
the arithmetic of torch's single-tensor path (the one it takes on CPU) in the same order, so a fit gives the
same bytes with either (``tests/test_adam.py`` compares them step by step). Its ``state_dict`` has
torch's layout, so checkpoints written by either optimizer load into the other.

No weight decay, amsgrad, maximize or complex parameters: the fit uses none of them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# The group keys torch.optim.Adam writes into its state_dict, with the values this update implies; kept so a
# checkpoint loads into torch.optim.Adam as well.
_TORCH_GROUP_DEFAULTS = {
    "weight_decay": 0.0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
}


class Adam:
    """Adam (Kingma & Ba) over one group of parameters, as ``torch.optim.Adam(params, lr, betas, eps)``.

    ``param_groups[0]["lr"]`` may be changed between steps (the fit's schedule does).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        params = list(params)
        if not params:
            raise ValueError("Adam got an empty parameter list")
        if not lr >= 0 or not eps >= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid Adam settings lr={lr}, betas={betas}, eps={eps}")
        self.param_groups = [
            {"params": params, "lr": lr, "betas": tuple(betas), "eps": eps} | _TORCH_GROUP_DEFAULTS
        ]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.param_groups[0]["params"]:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        for param in group["params"]:
            if param.grad is None:
                continue
            grad = param.grad
            state = self.state.get(param)
            if state is None:
                state = self.state[param] = {
                    # torch keeps the step count as a float32 CPU tensor and reads it back as a Python
                    # float; the bias corrections below are then Python float arithmetic, as there.
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            state["step"] += 1
            step = state["step"].item()
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1**step)
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        """torch.optim's layout: ``state`` by parameter index, ``param_groups`` with indices for params."""
        group = self.param_groups[0]
        params = group["params"]
        return {
            "state": {i: dict(self.state[p]) for i, p in enumerate(params) if p in self.state},
            "param_groups": [
                {key: value for key, value in group.items() if key != "params"}
                | {"params": list(range(len(params)))}
            ],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state written by this class or by ``torch.optim.Adam`` over the same parameters."""
        groups = state_dict["param_groups"]
        params = self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError("the optimizer state is for a different set of parameters")
        saved = groups[0]
        unsupported = [
            key
            for key, value in _TORCH_GROUP_DEFAULTS.items()
            if key in saved and key not in ("foreach", "fused") and saved[key] != value
        ]
        if unsupported:
            raise ValueError(f"the optimizer state uses Adam options this optimizer lacks: {unsupported}")
        self.param_groups[0].update(lr=saved["lr"], betas=tuple(saved["betas"]), eps=saved["eps"])
        self.state = {}
        for index, param_state in state_dict["state"].items():
            param = params[saved["params"].index(index)]
            self.state[param] = {
                "step": torch.as_tensor(param_state["step"], dtype=torch.float32).detach().cpu().clone(),
                "exp_avg": param_state["exp_avg"].detach().to(param).clone(),
                "exp_avg_sq": param_state["exp_avg_sq"].detach().to(param).clone(),
            }
