"""Option types shared by the commands."""

from __future__ import annotations

import math

import click


class FiniteFloatRange(click.FloatRange):
    """A float in a range that also refuses nan and ±inf (``click.FloatRange`` lets nan through: every
    comparison with nan is false)."""

    name = "finite float range"

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
