"""`@record`: the part of @dataclass the runtime uses, without its import and codegen cost.

Measured on this kind of machine: `import dataclasses` takes ~18 ms (it pulls in inspect,
ast, dis, tokenize) and decorating the runtime's 13 record classes another ~13 ms, because
dataclasses generates each method with exec(). Together that was a fifth of the `rkt run`
budget (150 ms, interpreter start included). This decorator reads the same declarations
(annotated fields, defaults, `factory(list)` for mutable defaults) and installs generic
``__init__``/``__repr__``/``__eq__`` methods, so records still read like dataclasses.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def factory(make: Callable[[], Any]) -> Any:
    """A default built fresh for every instance (like field(default_factory=...))."""
    return _Factory(make)


def record(cls: type[T] | None = None, *, frozen: bool = False) -> Any:
    """Class decorator: fields are the class's own annotations, in order."""

    def wrap(klass: type[T]) -> type[T]:
        names = tuple(klass.__dict__.get("__annotations__", {}))
        defaults: dict[str, Any] = {}
        for n in names:
            if n in klass.__dict__:
                defaults[n] = klass.__dict__[n]
                if isinstance(defaults[n], _Factory):
                    delattr(klass, n)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > len(names):
                raise TypeError(f"{klass.__name__}() takes {len(names)} arguments")
            values = dict(zip(names, args, strict=False))
            for k, v in kwargs.items():
                if k not in names or k in values:
                    raise TypeError(f"{klass.__name__}() got an unexpected or repeated {k!r}")
                values[k] = v
            for n in names:
                v = values.get(n, _MISSING)
                if v is _MISSING:
                    d = defaults.get(n, _MISSING)
                    if d is _MISSING:
                        raise TypeError(f"{klass.__name__}() missing argument {n!r}")
                    v = d.make() if isinstance(d, _Factory) else d
                object.__setattr__(self, n, v)

        def __repr__(self: Any) -> str:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{klass.__name__}({inner})"

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        klass.__init__ = __init__  # type: ignore[misc]
        klass.__repr__ = __repr__  # type: ignore[method-assign]
        klass.__eq__ = __eq__  # type: ignore[method-assign]
        klass.__record_fields__ = names  # type: ignore[attr-defined]
        if frozen:

            def __setattr__(self: Any, name: str, value: Any) -> None:
                raise AttributeError(f"{klass.__name__} is frozen")

            def __hash__(self: Any) -> int:
                return hash(tuple(getattr(self, n) for n in names))

            klass.__setattr__ = __setattr__  # type: ignore[method-assign]
            klass.__hash__ = __hash__  # type: ignore[method-assign]
        else:
            klass.__hash__ = None  # type: ignore[assignment]
        return klass

    return wrap if cls is None else wrap(cls)


def fields(obj: Any) -> tuple[str, ...]:
    return obj.__record_fields__


def asdict(obj: Any) -> Any:
    """Recursive plain-data copy (records -> dicts), for JSON."""
    if hasattr(obj, "__record_fields__"):
        return {n: asdict(getattr(obj, n)) for n in obj.__record_fields__}
    if isinstance(obj, list | tuple):
        return [asdict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: asdict(v) for k, v in obj.items()}
    return obj
