"""Typed values from command-line strings, by a dataclass field's annotation (the lowest layer:
tasks, models and configs all parse their options with it)."""
from __future__ import annotations

import types
import typing
from typing import Any

from seqgap.errors import SeqgapError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _base_types(annotation: Any) -> tuple[list[Any], bool]:
    """(the non-None types of an annotation, whether None is allowed)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = list(typing.get_args(annotation))
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def parse_typed(text: Any, annotation: Any, name: str) -> Any:
    """``text`` (a command-line string) as a value of type ``annotation``; SeqgapError naming ``name``."""
    if not isinstance(text, str):
        return text
    kinds, optional = _base_types(annotation)
    s = text.strip()
    if optional and s.lower() in ("none", "null"):
        return None
    if not s:
        raise SeqgapError(f"{name}: empty value")
    if len(kinds) > 1:  # a union (``int | str``): the first of its types that parses the text
        for kind in kinds:
            try:
                return parse_typed(s, kind, name)
            except SeqgapError:
                continue
        raise SeqgapError(f"{name}: expected {' or '.join(getattr(k, '__name__', str(k)) for k in kinds)}, "
                          f"got {text!r}")
    kind = kinds[0]
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        (elem, *_rest) = typing.get_args(kind) or (str,)
        try:
            items = [parse_typed(x, elem, name) for x in s.split(",") if x.strip()]
        except SeqgapError:
            what = {int: "integers", float: "numbers"}.get(elem, "values")
            raise SeqgapError(f"{name}: expected comma-separated {what}, got {text!r}") from None
        return tuple(items) if origin is tuple else items
    try:
        if kind is bool:
            low = s.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(s.replace("_", ""), 10)
        if kind is float:
            return float(s)
    except ValueError:
        what = {bool: "yes/no (true/false, 1/0)", int: "an integer", float: "a number"}[kind]
        raise SeqgapError(f"{name}: expected {what}, got {text!r}") from None
    if kind is str or kind is Any:
        return s
    return guess_value(s)


def guess_value(text: str) -> Any:
    """A value whose type is not declared: '3' -> 3, '1e-3' -> 0.001, 'true' -> True, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def typed_fields(cls: type, values: dict[str, Any], what: str) -> dict[str, Any]:
    """String values of ``values`` parsed by the field types of dataclass ``cls`` (unknown keys kept)."""
    hints = typing.get_type_hints(cls)
    return {k: parse_typed(v, hints[k], f"{what} {k}") if k in hints else v for k, v in values.items()}
