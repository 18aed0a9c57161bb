"""The composition root: the one place a command's object graph is built.

`bootstrap(WorkerContainer, settings)` chooses each adapter family once from the settings and
returns the entrypoint's container, built. A test or a benchmark swaps an adapter by argument —
`bootstrap(WorkerContainer, settings, record_store=InMemoryRecordStore(...))` — never by
patching a container class.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers

from .containers import KafkaBroker, MemoryBroker, MemoryDatabase, SqlDatabase
from .settings import Settings


def bootstrap[C: containers.DeclarativeContainer](
    entrypoint: type[C], settings: Settings, **overrides: Any
) -> C:
    """Build `entrypoint`'s container on `settings`; each override (an object or a provider)
    replaces the provider of that name."""
    broker = (
        MemoryBroker(settings=settings.broker)
        if settings.broker.kind == "memory"
        else KafkaBroker(settings=settings.broker, properties=settings.broker_properties)
    )
    database = (
        MemoryDatabase(settings=settings.database, identity=settings.identity)
        if settings.database.kind == "memory"
        else SqlDatabase(settings=settings.database, identity=settings.identity)
    )
    container = entrypoint(settings=settings, broker=broker, database=database)
    for name, value in overrides.items():
        provider = container.providers.get(name)
        if provider is None:
            known = ", ".join(sorted(container.providers))
            raise TypeError(f"{entrypoint.__name__} has no provider {name!r}; it has: {known}")
        provider.override(value if isinstance(value, providers.Provider) else providers.Object(value))
    return container
