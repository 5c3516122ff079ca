"""Email templates: Jinja2 in a sandbox where a missing or null value is an error, not a blank.

A template reads the action's ``customer_id``, ``action``, ``action_id``, ``channel``, ``label``,
``reason``, ``variant``, ``experiment``, ``change`` and ``features``. ``StrictUndefined`` makes a
name or feature the action does not carry fail the render, and printing a null value fails too
(write ``{{ label or "" }}`` where a blank is meant): the action is then dead-lettered with the
reason instead of an email going out with a hole in it.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from engine.activation.actions import ActionDecision


class TemplateProblem(ValueError):
    """A template could not be compiled or rendered; ``str()`` is one line."""


class _Strict(StrictUndefined):
    """StrictUndefined that names the keys a map does have (``features.churn`` on a map without it)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        owner = self._undefined_obj
        if self._undefined_hint is None and owner is not missing and isinstance(owner, dict):
            keys = ", ".join(sorted(map(str, owner))[:12]) or "none"
            return f"no {self._undefined_name!r} in the map (its keys: {keys})"
        return super()._undefined_message


def _no_nulls(value: Any) -> Any:
    if value is None:
        raise TemplateProblem('a printed value is null (write {{ x or "" }} where a blank is meant)')
    return value


_ENV = SandboxedEnvironment(undefined=_Strict, finalize=_no_nulls, autoescape=False)


def compile_template(source: str) -> Template:
    """Compile ``source``; raises :class:`TemplateProblem` on a syntax error."""
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error at line {exc.lineno}: {exc.message}") from None


def template_context(decision: ActionDecision) -> dict[str, Any]:
    """The variables a template of ``decision`` may read."""
    return {
        "customer_id": decision.customer_id,
        "action": decision.action,
        "action_id": decision.action_id,
        "channel": decision.channel,
        "label": decision.label,
        "reason": decision.reason,
        "variant": decision.variant,
        "experiment": decision.experiment,
        "change": decision.change,
        "features": decision.features,
    }


def render(template: Template, context: dict[str, Any]) -> str:
    """Render ``template``; raises :class:`TemplateProblem` with a one-line reason on failure."""
    try:
        return template.render(context)
    except TemplateProblem:
        raise
    except TemplateError as exc:  # UndefinedError, SecurityError, a bad filter call, ...
        message = " ".join(str(exc.message or exc).split())
        if isinstance(exc, UndefinedError):
            raise TemplateProblem(message) from None
        raise TemplateProblem(f"{type(exc).__name__}: {message}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateProblem(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
