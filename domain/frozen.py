"""Frozen dataclasses that are cheap to make: `quick_init` gives one a generated __init__ that
fills the instance's attributes in one go.

Why: the __init__ that `@dataclass(frozen=True)` generates sets each field through
`object.__setattr__(self, name, value)` (the class's own __setattr__ refuses), a slot-wrapper
call that costs ~1,000 instructions per field (callgrind); a settlement page makes about 70
fields' worth of frozen values per bet (the stored bet, its record, posting, update and
step), which was a fifth of the worker's instructions per bet. The __init__ made here gives
the instance its __dict__ in one call instead, a dict display in field order (the frozen
class's __setattr__ is not involved, as with object.__setattr__). A whole dict, rather than
the instance's own attribute storage filled key by key: an attribute of an instance whose
__dict__ was filled in place (`self.__dict__[name] = value`, a split-table dict) is read on
the interpreter's unspecialised path, ~2.5 times the instructions of a read from a whole
dict. The price is memory: a whole dict per value (a StoredBet's is 832 bytes, where its
inline attributes took ~0.2 kB), for values that live as long as their page.

Everything else stays as the dataclass made it: frozen (assignment still raises
FrozenInstanceError), equality, hashing, repr, `dataclasses.replace` (which calls this
__init__), pickling.

Only for plain frozen dataclasses: every field in __init__, positional or keyword (defaults
and default factories are kept), no __post_init__, no __slots__ (TypeError otherwise).
Must never: change what a value holds or how it compares; pure (no I/O).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
_FACTORY = object()     # the default of a field with a default factory: "make one"


def quick_init(cls: type[T]) -> type[T]:
    """Replace the frozen dataclass `cls`'s generated __init__ with one of the same signature
    that fills the instance's __dict__ directly (see the module docstring)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses")
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_init takes no __post_init__ and no __slots__")
    namespace: dict[str, Any] = {"_set_dict": object.__setattr__, "_FACTORY": _FACTORY}
    signature, items, factories = [], [], []
    for field in dataclasses.fields(cls):
        if not field.init or field.kw_only:
            raise TypeError(f"{cls.__name__}.{field.name}: quick_init takes plain fields only")
        if field.default_factory is not dataclasses.MISSING:
            # as the dataclass's own __init__: a sentinel default, the factory called per value
            namespace[f"_factory_{field.name}"] = field.default_factory
            signature.append(f"{field.name}=_FACTORY")
            factories.append(f"    if {field.name} is _FACTORY:\n"
                             f"        {field.name} = _factory_{field.name}()\n")
        elif field.default is dataclasses.MISSING:
            signature.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            signature.append(f"{field.name}=_default_{field.name}")
        items.append(f"{field.name!r}: {field.name}")
    source = (f"def __init__(self, {', '.join(signature)}):\n" + "".join(factories)
              + f"    _set_dict(self, '__dict__', {{{', '.join(items)}}})\n")
    exec(source, namespace)   # the text is made here from the field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
    return cls
