"""Option types shared by the commands."""

from __future__ import annotations

import ast
import importlib
import inspect
import math
from dataclasses import MISSING, fields
from functools import cache

import click


class FiniteFloatRange(click.FloatRange):
    """A float in a range that also refuses nan and ±inf (``click.FloatRange`` lets nan through: every
    comparison with nan is false)."""

    name = "float range"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloatRange()
"""Any finite float."""
POSITIVE = FiniteFloatRange(min=0, min_open=True)
"""A finite float > 0 (learning rates, step sizes, radii)."""
NON_NEGATIVE = FiniteFloatRange(min=0)
"""A finite float >= 0 (budgets, weights)."""


def config_option(config_class: type, field: str, *flags: str, **kwargs):
    """A click option for one field of a config dataclass: its default and its ``--help`` come from the
    dataclass (the default and the docstring written under the field), so the CLI never re-types them.

    ``flags`` default to ``--field-name``; ``kwargs`` go to ``click.option`` (type, is_flag, ...).
    """
    spec = next((f for f in fields(config_class) if f.name == field), None)
    if spec is None:
        raise ValueError(f"{config_class.__name__} has no field {field!r}")
    default = spec.default if spec.default is not MISSING else spec.default_factory()  # type: ignore[misc]
    help_text = field_help(config_class).get(field)
    flags = flags or ("--" + field.replace("_", "-"),)
    if kwargs.get("is_flag"):
        return click.option(*flags, field, default=bool(default), help=help_text, **kwargs)
    return click.option(
        *flags, field, default=default, show_default=default is not None, help=help_text, **kwargs
    )


def options_of(module: str, class_name: str):
    """``option(field, *flags, **kwargs)``: :func:`config_option` for the config class ``module.class_name``,
    imported when the first option is built (the CLI entry point stays free of torch)."""

    def option(field: str, *flags: str, **kwargs):
        config_class = getattr(importlib.import_module(module), class_name)
        return config_option(config_class, field, *flags, **kwargs)

    return option


def field_help(config_class: type) -> dict[str, str]:
    """Map each dataclass field to the docstring written under it (the ``--help`` text)."""
    return dict(_field_docstrings(config_class))


@cache
def _field_docstrings(config_class: type) -> tuple[tuple[str, str], ...]:
    body = ast.parse(inspect.getsource(config_class)).body[0].body
    docs = []
    for field_node, doc_node in zip(body, body[1:], strict=False):
        if (
            isinstance(field_node, ast.AnnAssign)
            and isinstance(field_node.target, ast.Name)
            and isinstance(doc_node, ast.Expr)
            and isinstance(doc_node.value, ast.Constant)
            and isinstance(doc_node.value.value, str)
        ):
            docs.append((field_node.target.id, " ".join(doc_node.value.value.split())))
    return tuple(docs)
