"""Shared by the hostile suite: sink options, storage snapshots, secret checks, the figures.

* :func:`snapshot` — every blob of a container (type, sealed, metadata, bytes), to prove that a
  refused request left storage exactly as it was;
* :func:`assert_no_secret` — for exceptions a test catches itself (``pytest.raises``), which the
  suite-wide guard in ``tests/conftest.py`` never sees: the message, ``repr``, every cause and
  context, the structured fields and the formatted traceback must hold no secret;
* :data:`TALLY` — counts of bad inputs tried, faults injected, crashes survived and rows checked,
  printed at the end of the run (the figures of docs/reliability.md).
"""

from __future__ import annotations

import csv
import io
import json
import traceback
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
from azure.storage.blob import BlobServiceClient

from elspeth_appendsink.errors import StorageError
from elspeth_appendsink.testing import FaultyTransport
from elspeth_appendsink.testing.azurite import Azurite
from tests.conftest import SECRETS_UNDER_TEST, find_secret
from tests.sink.conftest import FAST_RETRY, SCHEMA, Options, make_options

__all__ = ["FAST_RETRY", "SCHEMA", "Options", "make_options"]  # make_options: the shared fixture

#: FAST_RETRY allows two retries, no waiting: a fault outlasts the budget after three attempts.
ATTEMPTS = 1 + FAST_RETRY["total"]

#: Secrets only the hostile tests use. Added to the suite-wide guard's list, so any of them in a
#: log line, audit payload or escaping exception fails the test, as the suite's own secrets do.
WRONG_ACCOUNT_KEY = "V3JvbmdLZXlGb3JIb3N0aWxlVGVzdHNXcm9uZ0tleUZvckhvc3RpbGVUZXN0czAxMjM0NQ=="
CLIENT_SECRET = "Hostile~Client.Secret_0123456789abcdef"
SAS_SIGNATURE = "SG9zdGlsZVNhc1NpZ25hdHVyZTAxMjM0NTY3ODk%3D"
HOSTILE_SECRETS = (WRONG_ACCOUNT_KEY, CLIENT_SECRET, SAS_SIGNATURE, SAS_SIGNATURE.replace("%3D", "="))
SECRETS_UNDER_TEST.extend(s for s in HOSTILE_SECRETS if s not in SECRETS_UNDER_TEST)

TALLY: Counter[str] = Counter()
_TALLY_ORDER = (
    "bad configurations refused",
    "hostile run ids refused",
    "bad rows tried",
    "bad rows refused before their block was sent",
    "bad rows written by a documented rule",
    "faults injected",
    "crashes injected",
    "storage tamperings",
    "resumes",
    "rows checked exactly once",
    "rows lost",
    "rows duplicated",
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures this run produced (only when hostile tests ran)."""
    if not TALLY:
        return
    terminalreporter.section("hostile suite figures")
    for key in (*_TALLY_ORDER, *sorted(set(TALLY) - set(_TALLY_ORDER))):
        if key in TALLY or key in ("rows lost", "rows duplicated"):
            terminalreporter.write_line(f"{key}: {TALLY[key]}")


def container_client(azurite: Azurite, container: str) -> Any:
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)


Snapshot = dict[str, tuple[str, bool, dict[str, str], bytes]]


def snapshot(azurite: Azurite, container: str) -> Snapshot:
    """Every blob in ``container``: (blob type, sealed, metadata, bytes)."""
    cc = container_client(azurite, container)
    found: Snapshot = {}
    for blob in cc.list_blobs(include=["metadata"]):
        data = cc.get_blob_client(blob.name).download_blob().readall()
        found[blob.name] = (str(blob.blob_type), bool(blob.is_append_blob_sealed), dict(blob.metadata), data)
    return found


def assert_no_secret(*things: BaseException | str, secrets: Iterable[str] = ()) -> None:
    """No secret in any text of ``things``: exceptions are checked whole (chain and traceback)."""
    extra = [s for s in secrets if s]
    for thing in things:
        texts: list[str] = []
        if isinstance(thing, BaseException):
            texts.append("".join(traceback.format_exception(thing)))
            seen: set[int] = set()
            exc: BaseException | None = thing
            while exc is not None and id(exc) not in seen:
                seen.add(id(exc))
                texts += [str(exc), repr(exc)]
                if isinstance(exc, StorageError):
                    texts.append(json.dumps(exc.audit_fields(), default=str))
                exc = exc.__cause__ or exc.__context__
        else:
            texts.append(thing)
        for text in texts:
            leaked = find_secret(text)
            assert leaked is None, f"a secret reached {type(thing).__name__} text: {leaked}"
            for secret in extra:
                assert secret not in text, f"a secret reached {type(thing).__name__} text: {secret[:8]}…"


def count_faults(*transports: FaultyTransport) -> int:
    """Faults the transports injected (crashes counted apart), added to the tally."""
    faults = sum(1 for t in transports for s in t.log if s.fault and not s.fault.startswith("crash"))
    crashes = sum(1 for t in transports for s in t.log if s.fault and s.fault.startswith("crash"))
    TALLY["faults injected"] += faults
    TALLY["crashes injected"] += crashes
    return faults


def decode(fmt: str, data: bytes) -> list[dict[str, Any]]:
    """An output's rows, read with the format's standard reader (CSV cells stay text)."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    if fmt == "jsonl":
        assert not data or data.endswith(b"\n"), "every JSONL line is newline-terminated"
        return [json.loads(line) for line in data.splitlines()]
    if not data:
        return []
    return list(pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist())


def as_written(fmt: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``decode`` gives back for ``rows`` (CSV: every cell as text)."""
    if fmt == "csv":
        return [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]
    return [dict(row) for row in rows]


def tally_exact(delivered: list[dict[str, Any]], written: list[dict[str, Any]]) -> None:
    """Assert ``written`` is ``delivered`` exactly (each once, in order) and count the rows."""
    keys = [json.dumps(r, sort_keys=True, default=str) for r in written]
    wanted = Counter(json.dumps(r, sort_keys=True, default=str) for r in delivered)
    got = Counter(keys)
    lost = sum((wanted - got).values())
    duplicated = sum((got - wanted).values())
    TALLY["rows lost"] += lost
    TALLY["rows duplicated"] += duplicated
    assert (lost, duplicated) == (0, 0), f"{lost} rows lost, {duplicated} duplicated"
    assert written == delivered, "rows are out of order"
    TALLY["rows checked exactly once"] += len(written)
