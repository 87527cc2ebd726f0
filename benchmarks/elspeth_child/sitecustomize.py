"""Instrumentation loaded into the ELSPETH child process of ``benchmarks.elspeth_pipeline``.

Python imports ``sitecustomize`` at start-up from the first directory on ``sys.path`` that has
one; the benchmark puts this directory first on the child's ``PYTHONPATH``, and does nothing
unless ``BENCH_ELSPETH_STATS`` names the JSON file to write at exit. It owns two counters and
changes no behaviour:

* **bytes uploaded**, at the azure-core transport seam: ``RequestsTransport.send`` (the sync
  transport both Azure sinks use, below the SDK's retry policy, so a retried request counts
  again) adds each request's body size (``Content-Length``, else ``len(body)``), counts the
  request by method and by storage operation (``comp=``), and adds the time ``send`` took
  (the request's round trip as the sink waits for it).
* **time in the sink**, per lifecycle method (``__init__``, ``on_start``, ``write``, ``flush``,
  ``on_complete``, ``close``) of every ``BaseSink`` subclass: ELSPETH's own landscape times
  only ``write`` + ``flush`` (the ``sink_write`` operation), while a sink may also work in
  ``on_complete`` / ``close``.
* **time recording audit calls**: ``PluginContext.record_call`` (a plugin writing a call into
  ELSPETH's landscape and payload store), count and seconds — inside the sink's time when the
  sink records its requests.

Both patches are applied when their module is first imported (an import hook), so a child that
never imports azure-core or a sink pays nothing for them.
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

_OUT = os.environ.get("BENCH_ELSPETH_STATS")
_LOCK = threading.Lock()
_STATS: dict[str, Any] = {
    "requests": 0,
    "bytes_uploaded": 0,
    "transport_seconds": 0.0,
    "requests_by_method": {},
    "requests_by_operation": {},
    "sink_seconds": {},
    "sink_calls": {},
    "record_call_seconds": 0.0,
    "record_calls": 0,
}
_DEPTH = threading.local()
SINK_METHODS = ("__init__", "on_start", "write", "flush", "on_complete", "close")


def _body_size(request: Any) -> int:
    headers = getattr(request, "headers", {}) or {}
    length = headers.get("Content-Length") or headers.get("content-length")
    if length is not None:
        return int(length)
    body = getattr(request, "body", None)
    return len(body) if isinstance(body, bytes | bytearray) else 0


def _operation(request: Any) -> str:
    """``METHOD comp`` (e.g. ``PUT appendblock``, ``PUT lease``, ``GET -``) from the request URL."""
    query = parse_qs(urlsplit(str(request.url)).query)
    comp = query.get("comp", ["-"])[0]
    if comp == "-" and "restype" in query:
        comp = "restype=" + query["restype"][0]
    return f"{str(request.method).upper()} {comp}"


def _patch_transport(module: ModuleType) -> None:
    transport = module.RequestsTransport
    send = transport.send

    @functools.wraps(send)
    def counted_send(self: Any, request: Any, **kwargs: Any) -> Any:
        method = str(request.method).upper()
        operation = _operation(request)
        start = time.perf_counter()
        try:
            return send(self, request, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            with _LOCK:
                _STATS["requests"] += 1
                _STATS["bytes_uploaded"] += _body_size(request)
                _STATS["transport_seconds"] += elapsed
                by_method = _STATS["requests_by_method"]
                by_method[method] = by_method.get(method, 0) + 1
                by_op = _STATS["requests_by_operation"]
                by_op[operation] = by_op.get(operation, 0) + 1

    transport.send = counted_send


def _timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # only the outermost call is timed: a sink method calling its base class's counts once
        depths: dict[str, int] = _DEPTH.__dict__.setdefault("depths", {})
        depth = depths.get(name, 0)
        depths[name] = depth + 1
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            depths[name] = depth
            if depth == 0:
                elapsed = time.perf_counter() - start
                with _LOCK:
                    _STATS["sink_seconds"][name] = _STATS["sink_seconds"].get(name, 0.0) + elapsed
                    _STATS["sink_calls"][name] = _STATS["sink_calls"].get(name, 0) + 1

    return wrapper


def _patch_base_sink(module: ModuleType) -> None:
    base = module.BaseSink
    original = base.__dict__.get("__init_subclass__")

    def init_subclass(cls: type, /, **kwargs: Any) -> None:
        if original is not None:
            original.__func__(cls, **kwargs)
        else:
            super(base, cls).__init_subclass__(**kwargs)
        for name in SINK_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, _timed(name, cls.__dict__[name]))

    base.__init_subclass__ = classmethod(init_subclass)


def _patch_plugin_context(module: ModuleType) -> None:
    context = module.PluginContext
    record_call = context.record_call

    @functools.wraps(record_call)
    def timed_record_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return record_call(self, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            with _LOCK:
                _STATS["record_call_seconds"] += elapsed
                _STATS["record_calls"] += 1

    context.record_call = timed_record_call


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "azure.core.pipeline.transport._requests_basic": _patch_transport,
    "elspeth.plugins.infrastructure.base": _patch_base_sink,
    "elspeth.contracts.plugin_context": _patch_plugin_context,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self.inner = inner
        self.patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        self.patch(module)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def _dump() -> None:
    assert _OUT is not None
    with _LOCK:
        text = json.dumps(_STATS, indent=1, sort_keys=True)
    with open(_OUT, "w", encoding="utf-8") as f:
        f.write(text)


if _OUT:
    sys.meta_path.insert(0, _PatchingFinder())
    atexit.register(_dump)
