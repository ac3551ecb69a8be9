"""Binds each operation, written once, as a method of both clients with the right type.

`client.get(job_id)` on a `Client` returns a `JobView`; on an `AsyncClient` it
returns a coroutine of one. The descriptors below give mypy (and editors) that
signature from the operation's own, minus its leading `Session`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from errand.client._protocol import Op, Session

P = ParamSpec("P")
T = TypeVar("T")


class SyncDriver:
    """A client that runs operations with blocking I/O."""

    _session: Session

    def _run(self, op: Op[T]) -> T:
        raise NotImplementedError

    def _iterate(self, op: Op[T]) -> Iterator[T]:
        raise NotImplementedError


class AsyncDriver:
    """A client that runs operations on asyncio."""

    _session: Session

    async def _run(self, op: Op[T]) -> T:
        raise NotImplementedError

    def _iterate(self, op: Op[T]) -> AsyncIterator[T]:
        raise NotImplementedError


class _Bound(Generic[P, T]):
    _runner = ""  # the driver method that runs the operation

    def __init__(self, operation: Callable[Concatenate[Session, P], Op[T]]) -> None:
        self.operation = operation
        self.__doc__ = operation.__doc__

    def _bind(self, obj: SyncDriver | AsyncDriver) -> Callable[..., Any]:
        operation, runner = self.operation, getattr(obj, self._runner)

        def method(*args: Any, **kwargs: Any) -> Any:
            return runner(operation(obj._session, *args, **kwargs))

        method.__name__ = method.__qualname__ = operation.__name__
        method.__doc__ = operation.__doc__
        return method


class call(_Bound[P, T]):
    """An operation with one result: `T` on Client, `Coroutine[..., T]` on AsyncClient."""

    _runner = "_run"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SyncDriver, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: AsyncDriver, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: SyncDriver | AsyncDriver | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)


class stream(_Bound[P, T]):
    """An operation with many results: `Iterator[T]` on Client, `AsyncIterator[T]` on
    AsyncClient."""

    _runner = "_iterate"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SyncDriver, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, obj: AsyncDriver, owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, obj: SyncDriver | AsyncDriver | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)
