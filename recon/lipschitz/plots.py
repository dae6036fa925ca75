"""PNG figures of the ``recon lipschitz`` experiments (matplotlib, headless), written atomically."""

from __future__ import annotations

from pathlib import Path

from recon.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    fig.clf()


def plot_abs(result: dict, path: Path) -> None:
    """Fits of |x| / the cone slice, the KR potentials, and gradient norms through the layers."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for row, name in enumerate(("abs", "cone")):
        reg_ax, dual_ax, grad_ax = axes[row]
        for activation, style in (("relu", "-"), ("groupsort", "--")):
            case = result["cases"][f"{name}/{activation}"]
            curves = case["curves"]
            t = curves["t"]
            reg_ax.plot(
                t,
                curves["regression"],
                style,
                label=f"{activation} (max err {case['regression_max_error']:.3f})",
            )
            dual_ax.plot(t, curves["dual"], style, label=f"{activation} (W1 est. {case['w1_estimate']:.3f})")
            norms = case["regression_grad_norms_through_layers"]
            grad_ax.plot(range(len(norms)), norms, "o" + style, label=activation)
        reg_ax.plot(t, [abs(v) for v in t], ":", color="gray", label="target ||x||")
        dual_ax.plot(t, [abs(v) for v in t], ":", color="gray", label="optimal potential ||x||")
        reg_ax.set_title(
            f"{name}: regression of ||x|| (slice x2 = 0)" if name == "cone" else "abs: regression of |x|"
        )
        dual_ax.set_title(f"{name}: KR critic, W1(delta_0, unit sphere) = 1")
        grad_ax.set_title(f"{name}: mean ||df/dh_l|| (layer input l)")
        grad_ax.set_xlabel("linear layer (0 = network input)")
        grad_ax.set_ylim(0, 1.1)
        grad_ax.set_xticks(range(len(norms)))
        for ax in (reg_ax, dual_ax, grad_ax):
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_wasserstein(result: dict, path: Path) -> None:
    """The critic's batch objective during training against the exact subset values and the known W1."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = [10 * i for i in range(len(result["history"]))]
    ax.plot(steps, result["history"], lw=0.8, label="batch E_A f - E_B f")
    ax.axhline(
        result["kr_estimate"], color="C1", label=f"KR estimate (all points) {result['kr_estimate']:.4g}"
    )
    ax.axhline(
        result["subset_exact_mean"],
        color="C2",
        ls="--",
        label=f"exact W1, subsets of {result['subset_size']}: {result['subset_exact_mean']:.4g}",
    )
    if result.get("known_w1") is not None:
        ax.axhline(result["known_w1"], color="k", ls=":", label=f"known W1 {result['known_w1']:.4g}")
    ax.set_xlabel("step")
    ax.set_ylabel("W1")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def plot_training(record: dict, path: Path) -> None:
    """Hinge loss and training accuracy per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [h["epoch"] for h in record["history"]]
    ax.plot(epochs, [h["loss"] for h in record["history"]], label="hinge loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["train_accuracy"] for h in record["history"]], color="C1", label="train accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2.set_ylabel("accuracy")
    fig.legend(loc="center right", fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_certify(result: dict, path: Path) -> None:
    """Clean, certified and empirical robust accuracy against ε."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = result["results"]
    eps = [r["eps"] for r in rows]
    for key, style in (("clean", ":"), ("empirical", "-o"), ("certified", "-s")):
        ax.plot(eps, [r[key] for r in rows], style, label=key)
    ax.set_xlabel(f"eps ({result['norm']})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
