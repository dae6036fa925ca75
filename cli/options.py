"""Option types shared by the commands."""

from __future__ import annotations

import ast
import importlib
import inspect
import math
from contextlib import contextmanager
from dataclasses import MISSING, fields
from functools import cache

import click

from recon.errors import ConfigError


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


class CommaList(click.ParamType):
    """Comma-separated values (``item`` each) parsed into a tuple; ``all`` stands for ``everything`` when
    given. Bad text is a one-line :class:`ConfigError` naming the option, like a config's ``validate()``."""

    name = "text"

    def __init__(self, item: type = str, everything: tuple | None = None):
        self.item, self.everything = item, everything

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):  # a default of a ``multiple`` option, already parsed
            return value
        return parse_list(value, self.item, param.opts[0] if param else "the list", self.everything)

    def text(self, values: tuple) -> str:
        """The command-line text of ``values`` (how a default is shown)."""
        return "all" if values == self.everything else ",".join(map(str, values))


_NOUNS = {int: "integers", float: "numbers"}


def parse_list(text: str, item: type, what: str, everything: tuple | None = None) -> tuple:
    """``'1,5, 10'`` → ``(1, 5, 10)`` for ``item=int``; floats must be finite; ``what`` names the option."""
    if everything is not None and text.strip() == "all":
        return everything
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"{what} is empty")
    try:
        values = tuple(item(part) for part in parts)
    except ValueError:
        noun = _NOUNS.get(item, "values")
        raise ConfigError(f"{what} must be a comma-separated list of {noun}, got {text!r}") from None
    if item is float and not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what} must be finite numbers, got {text!r}")
    return values


def config_option(config_class: type, field: str, *flags: str, **kwargs):
    """A click option for one field of a config dataclass: its default and its ``--help`` come from the
    dataclass (the default and the docstring written under the field), so the CLI never re-types them.

    ``flags`` default to ``--field-name``; ``kwargs`` go to ``click.option`` (type, is_flag, ...). A field
    without a default is a required option; a tuple field reads a comma list (:class:`CommaList`, of the
    type of its items unless ``type`` is given).
    """
    spec = next((f for f in fields(config_class) if f.name == field), None)
    if spec is None:
        raise ValueError(f"{config_class.__name__} has no field {field!r}")
    help_text = field_help(config_class).get(field)
    flags = flags or ("--" + field.replace("_", "-"),)
    if spec.default is MISSING and spec.default_factory is MISSING:
        return click.option(*flags, field, required=True, help=help_text, **kwargs)
    default = spec.default if spec.default is not MISSING else spec.default_factory()  # type: ignore[misc]
    if kwargs.get("is_flag"):
        return click.option(*flags, field, default=bool(default), help=help_text, **kwargs)
    if isinstance(default, tuple) and not kwargs.get("multiple"):
        kind = kwargs.setdefault("type", CommaList(type(default[0])))
        default = kind.text(default)
    kwargs.setdefault("show_default", default is not None)
    return click.option(*flags, field, default=default, help=help_text, **kwargs)


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


SEED = click.IntRange(0, 2**32 - 1)
"""A seed: 0..2³²−1 (``recon.robust.data.MAX_SEED``)."""


class OneLineErrors(click.Group):
    """A command group whose usage errors (an option out of range, not a number, missing) are one
    ``error:`` line and exit 2, like the errors of a config's ``validate()``, instead of click's usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _one_line_usage_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with _one_line_usage_errors():
            return super().invoke(ctx)


_BARE_GROUP_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
"""What click >= 8.2 raises to show a group's help when it is called without a command (8.1 exits)."""


@contextmanager
def _one_line_usage_errors():
    """click's usage errors as ConfigError (its help for a bare group stays as it is)."""
    try:
        yield
    except _BARE_GROUP_HELP:
        raise
    except click.UsageError as exc:
        raise ConfigError(exc.format_message()) from None
