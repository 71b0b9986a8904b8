"""A tiny name → factory registry, one per extension point (models, balancers, datasets, losses)."""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from mtlkit.errors import ParameterError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Duplicate names raise; unknown names suggest close matches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {sorted(self._entries)}.{hint}"
            ) from None

    def parameters(self, name: str) -> list[str] | None:
        """The keyword parameters ``name`` takes, or None when they cannot be listed.

        A factory written as ``def mmoe(**kw) -> MMoE`` is looked through to the class its
        return annotation names."""
        factory = self.get(name)
        target: Callable = factory
        if _takes_any_keyword(factory):
            try:
                target = typing.get_type_hints(factory).get("return")
            except (NameError, TypeError):
                return None
            if not inspect.isclass(target) or _takes_any_keyword(target):
                return None
        return [p.name for p in inspect.signature(target).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def check_params(self, name: str, params: Iterable[str], provided: Iterable[str] = (),
                     internal: Iterable[str] = ()) -> None:
        """Raise :class:`ParameterError` naming any of ``params`` that ``name`` does not take,
        with the closest known ones. ``provided``: extra names the caller handles itself;
        ``internal``: names the caller passes itself (not settable by a user)."""
        known = self.parameters(name)
        if known is None:
            return
        allowed = sorted({*known, *provided} - set(internal))
        for key in params:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=2)
                hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise ParameterError(f"{self.kind} {name!r} has no parameter {key!r}.{hint} "
                                     f"Its parameters: {allowed}")

    def create(self, name: str, /, **kwargs) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _takes_any_keyword(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in params)
