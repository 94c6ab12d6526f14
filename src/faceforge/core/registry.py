"""One registry for every kind of component: backbones, heads, embedders, detectors, galleries.

Each kind holds one `Registry`; a component joins it with a decorator in its own file
(`@BACKBONES.register("r50")`), and callers build it by name (`BACKBONES.create("r50", ...)`).
A name that is not there is an error that lists what exists. Names with a prefix
(`timm:efficientnet_b0`, `onnx:model.onnx`) go to a factory registered for the prefix.

Components from outside the package register the same way; so that the CLI finds them, a
distribution declares its module under the `faceforge.plugins` entry-point group
(`[project.entry-points."faceforge.plugins"] mything = "mything.faceforge"`), and every
registry imports those modules the first time it is asked for a name.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from faceforge.core.errors import FaceForgeError

T = TypeVar("T")

PLUGIN_GROUP = "faceforge.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module declared under the `faceforge.plugins` entry points (once per
    process). A plugin that fails to import is an error naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as exc:
            raise FaceForgeError(f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from exc


class Registry(Generic[T]):
    """Name → factory (a class or a function) for one kind of component.

    kind: what the error messages call it ("backbone"); modules: built-in modules that
    register into it, imported on first use (so optional ones cost nothing until asked for);
    name_attr: set this attribute of a registered class to its name (detectors report
    which detector found a face by it).
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = (), name_attr: str | None = None) -> None:
        self.kind = kind
        self._modules = modules
        self._name_attr = name_attr
        self._entries: dict[str, Callable[..., T]] = {}
        self._prefixes: dict[str, tuple[Callable[..., T], str]] = {}
        self._loaded = not modules

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """Decorator (`@REG.register("name")`) or call (`REG.register("name", fn)`). A name
        registered twice is an error: a plugin cannot silently replace a component."""
        def add(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not obj:
                raise FaceForgeError(f"{self.kind} {name!r} is already registered ({self._entries[name]!r})")
            self._entries[name] = obj
            if self._name_attr and isinstance(obj, type):
                setattr(obj, self._name_attr, name)
            return obj
        return add(factory) if factory is not None else add

    def register_prefix(self, prefix: str, factory: Callable[..., T], shown: str) -> None:
        """Names starting with `prefix` go to factory(rest, **kwargs); `shown` is how the
        list presents them (`timm:<name>`)."""
        self._prefixes[prefix] = (factory, shown)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)
        load_plugins()

    def get(self, name: str) -> Callable[..., T]:
        """The registered factory; FaceForgeError listing the known names if there is none."""
        self._load()
        if name not in self._entries:
            raise FaceForgeError(f"unknown {self.kind} {name!r}; available: {', '.join(self.choices())}")
        return self._entries[name]

    def create(self, name: str, **kwargs) -> T:
        for prefix, (factory, _) in self._prefixes.items():
            if name.startswith(prefix):
                return factory(name[len(prefix):], **kwargs)
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def choices(self) -> list[str]:
        """What a user may pass: the registered names, then the prefix forms."""
        return self.names() + [shown for _, shown in self._prefixes.values()]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
