"""The file schemas as text: every field of a pydantic model (nested sections flattened to dotted
paths) with its type, constraints, default and description. `harness validate --schema` prints it;
error messages about unknown fields point there and suggest the closest valid name."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def _models_of(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """Nested models in `annotation` (directly, in X | None, in a tagged union of sections, or as dict
    values), each with its path suffix."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_of(args[0])
    if origin is dict and len(args) == 2:
        return [(m, ".<name>" + suffix) for m, suffix in _models_of(args[1])]
    if origin is list and args:
        return [(m, "[]" + suffix) for m, suffix in _models_of(args[0])]
    if origin in (typing.Union, types.UnionType):
        return [found for a in args for found in _models_of(a)]
    return []


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The first nested model in `annotation` and its path suffix (None when there is none)."""
    found = _models_of(annotation)
    return found[0] if found else (None, "")


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(a) if not isinstance(a, str) else a for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin in (list, tuple, set):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {type_name(args[0])} -> {type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "true | false"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation).replace("typing.", "")


def _constraints(info) -> str:
    out = []
    for m in info.metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "min items")):
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{sym} {v}")
    return ", ".join(out)


def _default(info) -> str:
    if info.default is not PydanticUndefined:
        d = info.default
        return "(section)" if isinstance(d, BaseModel) else repr(d)
    if info.default_factory is not None:
        d = info.default_factory()
        return (
            "(section)"
            if isinstance(d, BaseModel)
            else repr(d if not isinstance(d, dict) else {k: "..." for k in d})
        )
    return "required"


def schema_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted path, type [constraints], default, description) for every field, sections expanded."""
    rows = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        models = _models_of(info.annotation)
        typ = "section" if models and not models[0][1] else type_name(info.annotation)
        cons = _constraints(info)
        rows.append((path, typ + (f" ({cons})" if cons else ""), _default(info), info.description or ""))
        for i, (inner, suffix) in enumerate(models):
            sub = schema_rows(inner, f"{path}{suffix}.")
            if len(models) > 1:  # one of several section kinds (e.g. task: modchain or math): say which
                sub = [(r[0], r[1], r[2], f"[{inner.__name__}] {r[3]}") for r in sub]
            rows.extend(sub)
    return rows


def format_schema(title: str, model: type[BaseModel]) -> str:
    """One entry per field: `path: type (constraints); default X` and its description indented."""
    lines = [title, ""]
    for path, typ, default, desc in schema_rows(model):
        lines.append(f"{path}: {typ}" + ("" if default == "(section)" else f"; default {default}"))
        if desc:
            lines.append(f"    {desc}")
    return "\n".join(lines)


def fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid field names of the section at `loc` (a pydantic error location without the bad name)."""
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        if info is None:  # a dict key (e.g. a benchmark name): stay on the dict's value model
            continue
        model, _ = _model_of(info.annotation)
    return list(model.model_fields) if model is not None else []


def suggest(name: str, valid: list[str]) -> str:
    """" (did you mean 'x'?)" or ""."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
