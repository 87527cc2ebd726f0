"""Names in the storage account: container and blob-name rules, the ``blob_path`` template, and
the derived names of segments, manifests and per-run pointers.

Everything here is a pure function of its arguments. Azure (and even more Azurite, which accepts
names the service refuses or silently rewrites) is a weak validator of blob names, so every name
this package sends is checked here first, against the rules in azure-facts.md §9:

* a blob name is 1-1,024 characters in at most 254 ``/``-separated segments, with no ``.`` or
  ``..`` segment (the client normalises them away, so the signed name changes), no empty segment,
  no leading ``/``, no trailing ``.`` or ``/``, no backslash (stored as ``/``) and no control
  characters;
* a container name is 3-63 lowercase letters, digits and single hyphens, starting and ending
  with a letter or digit.

Derived names (all deterministic and exactly invertible):

* segment ``0`` is the rendered ``blob_path`` itself; segment ``n >= 1`` inserts ``.seg{n:06d}``
  before the final extension of the last path component (``out/a.csv`` -> ``out/a.seg000003.csv``;
  ``out/a`` -> ``out/a.seg000003``). Segment names ``n >= 1`` of one path sort in index order;
* the manifest of a run is ``{blob_path}.manifest/{run_id}``;
* the pointer from a run to the path it rendered is
  ``.elspeth-appendsink/runs/{run_id}/{template_digest}.json``.

A name that breaks a rule raises :class:`~elspeth_appendsink.errors.ConfigError` naming the
option it came from and the rule it breaks.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache
from typing import TYPE_CHECKING

from elspeth_appendsink.core.redact import redact_keylike
from elspeth_appendsink.errors import ConfigError

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "MAX_BLOB_NAME_LENGTH",
    "MAX_BLOB_NAME_SEGMENTS",
    "MAX_RUN_ID_LENGTH",
    "MAX_SEGMENT_INDEX",
    "POINTER_ROOT",
    "TEMPLATE_VARIABLES",
    "BlobPathTemplate",
    "manifest_name",
    "manifest_prefix",
    "parse_segment_index",
    "run_pointer_name",
    "segment_name",
    "validate_blob_path",
    "validate_container_name",
    "validate_run_id",
]

MAX_BLOB_NAME_LENGTH = 1024
MAX_BLOB_NAME_SEGMENTS = 254
MAX_RUN_ID_LENGTH = 200
SEGMENT_DIGITS = 6
MAX_SEGMENT_INDEX = 10**SEGMENT_DIGITS - 1
POINTER_ROOT = ".elspeth-appendsink/runs/"

#: The only variables a ``blob_path`` template may use (as in the stock ``azure_blob`` sink).
TEMPLATE_VARIABLES = frozenset({"run_id", "timestamp"})

# Placeholder values used to check a template's static text at construction.
_PLACEHOLDER_RUN_ID = "r"
_PLACEHOLDER_TIMESTAMP = "2000-01-01T00:00:00+00:00"

_CONTAINER_RULE = (
    "a container name is 3-63 characters of lowercase letters, digits and single hyphens, "
    "starting and ending with a letter or digit"
)
_CONTAINER_CHARS = re.compile(r"[a-z0-9-]*")

# A final extension is a dot and 1-16 letters/digits ("csv", "jsonl", "arrow", "gz"). Anything
# else after the last dot (e.g. the fraction and offset of an ISO timestamp) is not an extension.
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,16}\Z")
_SEGMENT_MARK = ".seg"


def _shorten(text: str, limit: int = 80) -> str:
    """``repr`` of ``text``, cut to ``limit`` characters so long names keep messages readable.

    Redacted first: cut first, a secret mistakenly given here would no longer match itself."""
    text = redact_keylike(text)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _bad_character(text: str) -> str | None:
    """The first control, surrogate or non-character code point in ``text``, if any."""
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\ufffe\uffff":
            return char
    return None


def validate_container_name(name: str) -> str:
    """Return ``name`` if it is a valid container name, else raise ``ConfigError("container")``."""
    if not isinstance(name, str):
        raise ConfigError("container", f"must be a string, got {type(name).__name__}", hint=_CONTAINER_RULE)
    shown = _shorten(name)
    if not 3 <= len(name) <= 63:
        problem = f"{shown} is {len(name)} characters long"
    elif not _CONTAINER_CHARS.fullmatch(name):
        problem = f"{shown} contains characters other than lowercase letters, digits and '-'"
    elif name[0] == "-" or name[-1] == "-":
        problem = f"{shown} starts or ends with '-'"
    elif "--" in name:
        problem = f"{shown} contains consecutive hyphens"
    else:
        return name
    raise ConfigError("container", f"invalid container name: {problem}; {_CONTAINER_RULE}")


def _blob_path_problem(path: str) -> str | None:
    """Which blob-name rule ``path`` breaks, or ``None`` if it breaks none."""
    if not path:
        return "must not be empty"
    bad = _bad_character(path)
    if bad is not None:
        return f"must not contain control or surrogate characters (found U+{ord(bad):04X})"
    if "\\" in path:
        return "must not contain a backslash (Azure stores '\\' as '/', so 'a\\b' would name 'a/b')"
    if len(path) > MAX_BLOB_NAME_LENGTH:
        return f"is {len(path)} characters long; Azure allows at most {MAX_BLOB_NAME_LENGTH}"
    if path.startswith("/"):
        return "must not start with '/'"
    if path.endswith("/"):
        return "must not end with '/'"
    if path.endswith("."):
        return "must not end with '.'"
    parts = path.split("/")
    if len(parts) > MAX_BLOB_NAME_SEGMENTS:
        return f"has {len(parts)} '/'-separated segments; Azure allows at most {MAX_BLOB_NAME_SEGMENTS}"
    if "" in parts:
        return "must not contain an empty segment ('//')"
    if "." in parts or ".." in parts:
        return (
            "must not contain a '.' or '..' segment (the client normalises them away, "
            "so the blob written would not be the blob named)"
        )
    return None


def validate_blob_path(path: str, option: str = "blob_path") -> str:
    """Return ``path`` if it is a valid blob name, else raise ``ConfigError(option)`` naming the rule.

    Args:
        path: the blob name, relative to its container.
        option: the option the name came from, for the error.
    """
    if not isinstance(path, str):
        raise ConfigError(option, f"blob name must be a string, got {type(path).__name__}")
    problem = _blob_path_problem(path)
    if problem is not None:
        raise ConfigError(option, f"invalid blob name {_shorten(path)}: it {problem}")
    return path


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can be part of a blob name, else raise ``ConfigError("run_id")``.

    A run id is one path segment: 1-200 characters, no ``/`` or ``\\``, no control characters,
    not ``.`` or ``..`` and not ending with ``.``.
    """
    if not isinstance(run_id, str):
        raise ConfigError("run_id", f"run id must be a string, got {type(run_id).__name__}")
    shown = _shorten(run_id)
    bad = _bad_character(run_id)
    if not run_id:
        problem = "it is empty"
    elif len(run_id) > MAX_RUN_ID_LENGTH:
        problem = f"it is {len(run_id)} characters long (at most {MAX_RUN_ID_LENGTH})"
    elif "/" in run_id or "\\" in run_id:
        problem = "it contains '/' or '\\' (a run id is a single name segment)"
    elif bad is not None:
        problem = f"it contains a control or surrogate character (U+{ord(bad):04X})"
    elif run_id.endswith("."):
        problem = "it ends with '.'"
    else:
        return run_id
    raise ConfigError("run_id", f"run id {shown} cannot be used in a blob name: {problem}")


# --------------------------------------------------------------------------------------------
# segment, manifest and pointer names


def _split_extension(blob_path: str) -> tuple[str, str]:
    """Split ``blob_path`` into (everything before the final extension, the extension)."""
    slash = blob_path.rfind("/")
    last = blob_path[slash + 1 :]
    match = _EXTENSION.search(last)
    if match is None or match.start() == 0:  # no extension, or a dot-file such as ".data"
        return blob_path, ""
    cut = len(blob_path) - len(match.group())
    return blob_path[:cut], blob_path[cut:]


def segment_name(blob_path: str, index: int) -> str:
    """The blob name of segment ``index`` of the output whose first segment is ``blob_path``.

    Segment 0 is ``blob_path`` itself; segment ``n >= 1`` is ``blob_path`` with ``.seg{n:06d}``
    inserted before the final extension of its last component (appended when it has none).
    Raises ``ConfigError("blob_path")`` when the derived name breaks a blob-name rule (length).

    Args:
        blob_path: the rendered blob path (a valid blob name).
        index: 0 <= index <= 999,999.
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_SEGMENT_INDEX:
        raise ValueError(f"segment index must be an int in [0, {MAX_SEGMENT_INDEX}], got {index!r}")
    if index == 0:
        return blob_path
    stem, extension = _split_extension(blob_path)
    return validate_blob_path(f"{stem}{_SEGMENT_MARK}{index:0{SEGMENT_DIGITS}d}{extension}")


def parse_segment_index(blob_path: str, name: str) -> int | None:
    """The index ``n`` with ``segment_name(blob_path, n) == name``, or ``None`` if there is none."""
    if name == blob_path:
        return 0
    stem, extension = _split_extension(blob_path)
    prefix = stem + _SEGMENT_MARK
    width = len(prefix) + SEGMENT_DIGITS
    if len(name) != width + len(extension) or not name.startswith(prefix) or not name.endswith(extension):
        return None
    digits = name[len(prefix) : width]
    if not (digits.isascii() and digits.isdigit()):
        return None
    index = int(digits)
    return index if index >= 1 else None


def manifest_prefix(blob_path: str) -> str:
    """The name prefix under which the manifests of every run writing ``blob_path`` live."""
    return f"{blob_path}.manifest/"


def manifest_name(blob_path: str, run_id: str) -> str:
    """The blob name of run ``run_id``'s manifest for the output at ``blob_path``."""
    validate_run_id(run_id)
    return validate_blob_path(f"{manifest_prefix(blob_path)}{run_id}")


def run_pointer_name(template_digest: str, run_id: str) -> str:
    """The blob name recording which path run ``run_id`` rendered from the template ``template_digest``."""
    validate_run_id(run_id)
    if not re.fullmatch(r"[0-9a-f]{16}", template_digest):
        raise ValueError(f"template digest must be 16 lowercase hex digits, got {template_digest!r}")
    return f"{POINTER_ROOT}{run_id}/{template_digest}.json"


# --------------------------------------------------------------------------------------------
# the blob_path template


@cache
def _environment() -> SandboxedEnvironment:
    """The one sandbox every ``blob_path`` compiles in (built on first use: core loads no Jinja2)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class BlobPathTemplate:
    """The compiled ``blob_path`` option: a Jinja2 template over ``run_id`` and ``timestamp``.

    It is compiled in a ``SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)``,
    like the stock ``azure_blob`` sink, but every problem is found at construction: a syntax
    error, a variable other than ``run_id``/``timestamp``, or static text that cannot make a
    valid blob name (checked by rendering placeholder values) raises ``ConfigError("blob_path")``.

    Args:
        source: the template text, as configured.
        container: the container the output goes to (part of :attr:`template_digest`).
    """

    __slots__ = ("_container", "_digest", "_source", "_template", "_variables")

    def __init__(self, source: str, container: str) -> None:
        from jinja2 import TemplateSyntaxError, meta  # Jinja2 loads with the first template only

        if not isinstance(source, str) or not source.strip():
            raise ConfigError("blob_path", "must be a non-empty template such as 'out/{{ run_id }}/rows.csv'")
        environment = _environment()
        try:
            parsed = environment.parse(source)
            template = environment.from_string(parsed)
        except TemplateSyntaxError as exc:
            raise ConfigError(
                "blob_path", f"invalid template syntax at line {exc.lineno}: {exc.message}"
            ) from None
        variables = frozenset(meta.find_undeclared_variables(parsed))
        unknown = sorted(variables - TEMPLATE_VARIABLES)
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            raise ConfigError(
                "blob_path",
                f"template uses unknown variable(s) {names}",
                hint="only {{ run_id }} and {{ timestamp }} are available",
            )
        self._source = source
        self._container = container
        self._template: Template = template
        self._variables = variables
        self._digest = hashlib.sha256(f"{container}\n{source}".encode()).hexdigest()[:16]
        self.render(_PLACEHOLDER_RUN_ID, _PLACEHOLDER_TIMESTAMP)

    @property
    def source(self) -> str:
        """The template text as configured."""
        return self._source

    @property
    def container(self) -> str:
        """The container the rendered path lives in."""
        return self._container

    @property
    def variables(self) -> frozenset[str]:
        """The template variables used (a subset of ``{"run_id", "timestamp"}``)."""
        return self._variables

    @property
    def uses_run_id(self) -> bool:
        """Whether the rendered path depends on the run id."""
        return "run_id" in self._variables

    @property
    def uses_timestamp(self) -> bool:
        """Whether the rendered path depends on the time of the first write (differs on resume)."""
        return "timestamp" in self._variables

    @property
    def is_static(self) -> bool:
        """Whether every run renders the same path."""
        return not self._variables

    @property
    def template_digest(self) -> str:
        """16 hex digits of sha256(container + "\\n" + source): keys the per-run path pointers."""
        return self._digest

    def render(self, run_id: str, timestamp: str) -> str:
        """Render the path for a run and validate it (``ConfigError("blob_path")`` if invalid).

        The run id is checked first (``ConfigError("run_id")``), so a hostile run id such as
        ``..`` is reported as the run id's problem, not the template's.

        The names derived from the path (its last possible segment, the run's manifest) are
        validated too, so that a run cannot fail on a name half-way through.
        """
        validate_run_id(run_id)  # a bad run id is the run id's fault, not the template's
        try:
            path = self._template.render(run_id=run_id, timestamp=timestamp)
        except Exception as exc:  # SecurityError, UndefinedError, errors raised by filters
            raise ConfigError(
                "blob_path", f"template cannot be rendered: {type(exc).__name__}: {exc}"
            ) from None
        validate_blob_path(path)
        stem, extension = _split_extension(path)
        for derived in (
            f"{stem}{_SEGMENT_MARK}{MAX_SEGMENT_INDEX}{extension}",
            f"{manifest_prefix(path)}{run_id}",
        ):
            problem = _blob_path_problem(derived)
            if problem is not None:
                raise ConfigError(
                    "blob_path",
                    f"rendered path {_shorten(path)} leaves no room for the names derived from it: "
                    f"{_shorten(derived)} {problem}",
                    hint="shorten blob_path",
                )
        return path

    def __repr__(self) -> str:
        return f"BlobPathTemplate({self._source!r}, container={self._container!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlobPathTemplate):
            return NotImplemented
        return (self._source, self._container) == (other._source, other._container)

    def __hash__(self) -> int:
        return hash((self._source, self._container))
