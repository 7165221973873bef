"""`Record`: the frozen value type settings are made of (Settings, Preset, Field, ServerSpec).

What `@dataclass(frozen=True)` gives — an `__init__` taking the annotated fields in order (positional or
by name), defaults from the class body, `==`, `hash`, a `repr`, assignment refused, `replace()` — written
once. A generated dataclass costs 0.2–1.7 ms of exec() at import (Settings alone, 45 fields, 1.7 ms),
paid by every run: 2.9 ms of a plain `ask` for the classes here (issue 22). The class body is the one
list of fields, as with a dataclass: each annotated name is a field, its value (if any) the default.
Defaults must be immutable (tuples, not lists), as a frozen value's are.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple


class Record:
    _FIELDS: Tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._FIELDS = tuple(names)

    def __init__(self, *args: Any, **kwargs: Any):
        fields = self._FIELDS
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} arguments ({len(args)} given)")
        values: Dict[str, Any] = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name in values:
                raise TypeError(f"{type(self).__name__} got two values for {name!r}")
            if name not in fields:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            values[name] = value
        cls = type(self)
        for name in fields:
            if name not in values:
                if not hasattr(cls, name):
                    raise TypeError(f"{type(self).__name__} needs a value for {name!r}")
                # Held by the instance: a default that is a function (Field.kind) read through the
                # class would come back as a bound method.
                values[name] = getattr(cls, name)
        self.__dict__.update(values)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def replace(self, **changes: Any):
        """A copy with some fields changed (dataclasses.replace)."""
        values = {name: getattr(self, name) for name in self._FIELDS}
        for name in changes:
            if name not in values:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")
