"""The provider registry: every module of this package defining a Provider subclass with an
``identifier`` is found automatically, so adding a provider never edits a shared list."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from typing import Any

import httpx

from tidings.channels.providers.base import (
    Provider,
    ProviderConfig,
    Sender,
    UnknownProviderError,
    UrlGuard,
)

# Modules of this package that hold shared code, not providers.
_NOT_PROVIDERS = frozenset({"base", "registry"})


def _subclasses(cls: type[Provider[Any]]) -> list[type[Provider[Any]]]:
    found: list[type[Provider[Any]]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


@cache
def _registry() -> dict[str, type[Provider[Any]]]:
    package = importlib.import_module("tidings.channels.providers")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_PROVIDERS and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    registry: dict[str, type[Provider[Any]]] = {}
    for cls in _subclasses(Provider):
        identifier = cls.__dict__.get("identifier")
        if isinstance(identifier, str):
            if identifier in registry and registry[identifier] is not cls:
                raise RuntimeError(f"Two providers claim the identifier {identifier!r}")
            registry[identifier] = cls
    return registry


def get_provider(identifier: str) -> type[Provider[Any]]:
    """The provider class for ``identifier``; UnknownProviderError if there is none."""
    registry = _registry()
    try:
        return registry[identifier]
    except KeyError:
        raise UnknownProviderError(identifier, list(registry)) from None


def all_providers() -> list[type[Provider[Any]]]:
    """Every registered provider class, by identifier."""
    registry = _registry()
    return [registry[key] for key in sorted(registry)]


def build_provider(
    identifier: str,
    http: httpx.AsyncClient,
    *,
    config: ProviderConfig | None = None,
    environ: Mapping[str, str] | None = None,
    url_guard: UrlGuard | None = None,
    guarded_send: Sender | None = None,
) -> Provider[Any]:
    """An instance of provider ``identifier`` using ``http``; config read from the environment
    (``config_from_env``) unless given."""
    from tidings.channels.providers.base import config_from_env

    cls = get_provider(identifier)
    if config is None:
        config = config_from_env(identifier, environ)
    return cls(http, config, url_guard=url_guard, guarded_send=guarded_send)
