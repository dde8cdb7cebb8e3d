"""pydantic's validation errors in words a DBA can act on: the field path as the YAML reads
(aliases, list indexes, no union tags) and a reason per error type."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from pgha_operator.core.spec.models import API_VERSION, KIND, PROVIDER_TYPES, Cluster
from pgha_operator.core.spec.patterns import PATTERN_REASONS
from pgha_operator.core.spec.problems import path_part, show_value

# Extra words for bounds, by field path (list indexes removed) and error type.
BOUND_HINTS = {
    ("spec.patroni.ttl", "greater_than_equal"): "Patroni's floor; below it Patroni "
    "silently uses 20",
    ("spec.patroni.loopWait", "greater_than_equal"): "Patroni's floor",
    ("spec.patroni.retryTimeout", "greater_than_equal"): "Patroni's floor",
    ("spec.etcd.members", "greater_than_equal"): "the DCS needs a member; use 3 for production",
    ("spec.etcd.members", "less_than_equal"): "every etcd write waits for a quorum; more "
    "members only slow it down",
    ("spec.postgres.instances", "greater_than_equal"): "a cluster needs a PostgreSQL node",
    ("spec.postgres.instances", "less_than_equal"): "derived addresses .11-.99 must stay "
    "below the etcd block (.101-)",
    ("spec.loadBalancer.instances", "greater_than_equal"): "clients connect through HAProxy",
}


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Every distinct (field path, reason) of a validation error, in pydantic's order."""
    problems = []
    for err in exc.errors():
        path, reason = error_reason(err, [str(x) for x in err["loc"]])
        if (path, reason) not in problems:
            problems.append((path, reason))
    return problems


def yaml_path(loc: Sequence[Any]) -> list[str]:
    """pydantic's location as the YAML reads: aliases, list indexes, no union tags."""
    out: list[str] = []
    for part in loc:
        text = str(part)
        if out and out[-1] == "provider" and text in PROVIDER_TYPES:
            continue  # the discriminator tag pydantic inserts
        if text.startswith("function-") or text == "[key]":
            continue  # validator names; the mark pydantic puts after a refused mapping key
        out.append(path_part(text))
    return out


@dataclass(frozen=True)
class FieldError:
    """One pydantic error, with what every reason below needs precomputed."""

    kind: str
    loc: list[str]  # pydantic's raw location
    parts: list[str]  # the same as the YAML reads
    ctx: dict[str, Any]
    value: Any
    msg: str

    @property
    def path(self) -> str:
        return ".".join(self.parts)

    @property
    def shown(self) -> str:
        return show_value(self.value)


def error_reason(err: Any, loc: list[str]) -> tuple[str, str]:
    """(field path, reason) for one entry of `ValidationError.errors()`."""
    error = FieldError(
        kind=err["type"],
        loc=loc,
        parts=yaml_path(loc),
        ctx=err.get("ctx") or {},
        value=err.get("input"),
        msg=err["msg"],
    )
    template = _TEMPLATES.get(error.kind)
    if template is not None:
        return error.path, template.format(shown=error.shown)
    words = _REASONS.get(error.kind)
    if words is not None:
        return words(error)
    return error.path, error.msg.removeprefix("Value error, ")


# Reasons that only show the value.
_TEMPLATES: dict[str, str] = {
    "missing": "is required",
    "string_type": "expected text, got {shown}",
    "str_type": "expected text, got {shown}",
    "bool_type": "expected true or false, got {shown}",
    "bool_parsing": "expected true or false, got {shown}",
    "dict_type": "expected a mapping (key: value), got {shown}",
    "model_type": "expected a mapping (key: value), got {shown}",
    "model_attributes_type": "expected a mapping (key: value), got {shown}",
    "mapping_type": "expected a mapping (key: value), got {shown}",
    "list_type": "expected a list, got {shown}",
    "tuple_type": "expected a list, got {shown}",
    "ip_v4_address": "{shown} is not an IPv4 address",
}


def _unknown_field(e: FieldError) -> tuple[str, str]:
    return e.path, f"unknown field {e.parts[-1]!r}" + _suggest(e.loc)


def _unknown_provider(e: FieldError) -> tuple[str, str]:
    expected = ", ".join(PROVIDER_TYPES)
    return (
        f"{e.path}.type",
        f"unknown provider type {e.ctx.get('tag')!r}; expected one of {expected}",
    )


def _provider_without_type(e: FieldError) -> tuple[str, str]:
    return f"{e.path}.type", f"is required: one of {', '.join(PROVIDER_TYPES)}"


def _not_one_of(e: FieldError) -> tuple[str, str]:
    if e.parts[-1] == "method" and e.value == "trust":
        return (
            e.path,
            "'trust' is not allowed: every connection must authenticate (use scram-sha-256)",
        )
    if e.parts == ["apiVersion"]:
        return e.path, f"{e.shown} is not supported; this operator reads apiVersion: {API_VERSION}"
    if e.parts == ["kind"]:
        return e.path, f"{e.shown} is not a kind this operator reads; expected kind: {KIND}"
    reason = f"{e.shown} is not one of {e.ctx.get('expected', '')}"
    if isinstance(e.value, bool):
        reason += '; YAML reads unquoted on/off/yes/no as true/false: quote it, e.g. "off"'
    return e.path, reason


def _out_of_bounds(e: FieldError) -> tuple[str, str]:
    bound = e.ctx.get("ge", e.ctx.get("gt")) if e.kind.startswith("greater") else None
    if bound is not None:
        reason = f"{e.shown} is too small: the minimum is {bound}"
    else:
        reason = f"{e.shown} is too large: the maximum is {e.ctx.get('le', e.ctx.get('lt'))}"
    hint = BOUND_HINTS.get((".".join(p for p in e.parts if not p.isdigit()), e.kind))
    return e.path, f"{reason} ({hint})" if hint else reason


def _not_a_whole_number(e: FieldError) -> tuple[str, str]:
    unquote = isinstance(e.value, str) and e.value.strip().isdigit()
    return e.path, f"expected a whole number, got {e.shown}" + (
        "; write it without quotes" if unquote else ""
    )


def _pattern_mismatch(e: FieldError) -> tuple[str, str]:
    why = PATTERN_REASONS.get(e.ctx.get("pattern", ""))
    return e.path, f"{e.shown} {why}" if why else e.msg


def _not_a_network(e: FieldError) -> tuple[str, str]:
    reason = f"{e.shown} is not an IPv4 network in CIDR form (e.g. 10.0.0.0/24)"
    try:
        loose = IPv4Network(str(e.value), strict=False)
    except ValueError:
        return e.path, reason
    return e.path, f"{e.shown} has host bits set; did you mean {loose}?"


# Reasons that look at more than the value, by pydantic error type.
_REASONS: dict[str, Callable[[FieldError], tuple[str, str]]] = {
    "extra_forbidden": _unknown_field,
    "union_tag_invalid": _unknown_provider,
    "union_tag_not_found": _provider_without_type,
    "literal_error": _not_one_of,
    "greater_than_equal": _out_of_bounds,
    "less_than_equal": _out_of_bounds,
    "greater_than": _out_of_bounds,
    "less_than": _out_of_bounds,
    "int_type": _not_a_whole_number,
    "int_parsing": _not_a_whole_number,
    "int_from_float": _not_a_whole_number,
    "string_pattern_mismatch": _pattern_mismatch,
    "ip_v4_network": _not_a_network,
}


def _suggest(loc: list[str]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    known = [f.alias or name for name, f in model.model_fields.items()]
    key = loc[-1]
    if to_camel(key) in known:
        return f"; did you mean {to_camel(key)!r}? (manifests use camelCase)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of {', '.join(known)}"


def _model_at(loc: Sequence[str]) -> type[BaseModel] | None:
    """The model that the mapping at this pydantic location is validated against."""
    model: type[BaseModel] | None = Cluster
    for i, part in enumerate(loc):
        if part.isdigit():
            continue
        if i > 0 and loc[i - 1] == "provider" and part in PROVIDER_TYPES:
            model = PROVIDER_TYPES[part]  # the discriminator tag pydantic inserts
            continue
        if model is None:
            return None
        info = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if info is None:
            return None
        model = _inner_model(info.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return _inner_model(args[0])
    models = [m for m in (_inner_model(a) for a in args) if m is not None]
    return models[0] if len(models) == 1 else None
