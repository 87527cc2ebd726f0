"""Names in the storage account: container and blob-name rules, the blob_path template, derived names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elspeth_appendsink.core.paths import (
    MAX_SEGMENT_INDEX,
    BlobPathTemplate,
    manifest_name,
    manifest_prefix,
    parse_segment_index,
    run_pointer_name,
    segment_name,
    validate_blob_path,
    validate_container_name,
    validate_run_id,
)
from elspeth_appendsink.errors import ConfigError

# A path segment: printable, no '/', '\\', not '.'/'..', no trailing '.'.
_segment_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\\ufffe\uffff"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.endswith("."))
_extension = st.sampled_from(
    ["", ".csv", ".jsonl", ".arrow", ".gz", ".tar.gz", ".2024-01-01T00:00:00.5+00:00"]
)
blob_paths = st.builds(
    lambda parts, ext: "/".join(parts) + ext,
    st.lists(_segment_text, min_size=1, max_size=4),
    _extension,
).filter(lambda p: not p.endswith(".") and len(p) <= 200)
segment_indexes = st.integers(min_value=0, max_value=MAX_SEGMENT_INDEX)


class TestValidateContainerName:
    @pytest.mark.parametrize("name", ["abc", "a" * 63, "123", "out-1", "a-b-c"])
    def test_valid_names_are_returned(self, name: str) -> None:
        """Names of 3-63 lowercase letters, digits and single inner hyphens pass unchanged."""
        assert validate_container_name(name) == name

    @pytest.mark.parametrize(
        ("name", "rule"),
        [
            ("ab", "2 characters long"),
            ("a" * 64, "64 characters long"),
            ("ABC", "other than lowercase"),
            ("a_b", "other than lowercase"),
            ("a.b", "other than lowercase"),
            ("-abc", "starts or ends with '-'"),
            ("abc-", "starts or ends with '-'"),
            ("a--b", "consecutive hyphens"),
        ],
    )
    def test_invalid_names_name_the_rule(self, name: str, rule: str) -> None:
        """Each broken rule raises ConfigError('container') saying which rule and stating all of them."""
        with pytest.raises(ConfigError) as info:
            validate_container_name(name)
        assert info.value.option == "container"
        assert rule in str(info.value)
        assert "3-63 characters" in str(info.value)

    def test_non_string_is_refused(self) -> None:
        """A container that is not a string is a ConfigError, not a TypeError."""
        with pytest.raises(ConfigError, match="must be a string"):
            validate_container_name(123)  # type: ignore[arg-type]


class TestValidateBlobPath:
    @pytest.mark.parametrize(
        "path", ["a", "out/a.csv", "ä ö.log", "q?h#p%a&.log", "x" * 1024, "/".join(["s"] * 254), ".hidden"]
    )
    def test_valid_paths_are_returned(self, path: str) -> None:
        """Names within Azure's rules pass unchanged, including 1024 chars and 254 segments."""
        assert validate_blob_path(path) == path

    @pytest.mark.parametrize(
        ("path", "rule"),
        [
            ("", "must not be empty"),
            ("x" * 1025, "at most 1024"),
            ("/".join(["s"] * 255), "at most 254"),
            (".", "must not end with '.'"),
            ("..", "must not end with '.'"),
            ("a/../b", "'..' segment"),
            ("a/./b", "'..' segment"),
            ("x.", "must not end with '.'"),
            ("dir/", "must not end with '/'"),
            ("/leading", "must not start with '/'"),
            ("a//b", "empty segment"),
            ("a\\b", "backslash"),
            ("a\nb", "control"),
            ("a\x00b", "U+0000"),
            ("a\x7fb", "control"),
        ],
    )
    def test_invalid_paths_name_the_rule(self, path: str, rule: str) -> None:
        """Each rule Azurite does not enforce is enforced here, and the message names it."""
        with pytest.raises(ConfigError) as info:
            validate_blob_path(path)
        assert info.value.option == "blob_path"
        assert rule in str(info.value)

    def test_option_name_is_passed_through(self) -> None:
        """Callers validating a derived name can attribute the error to another option."""
        with pytest.raises(ConfigError) as info:
            validate_blob_path("a//b", option="manifest")
        assert info.value.option == "manifest"

    def test_long_paths_are_shortened_in_the_message(self) -> None:
        """A 2000-character name does not make a 2000-character message."""
        with pytest.raises(ConfigError) as info:
            validate_blob_path("x" * 2000)
        assert len(str(info.value)) < 300


class TestValidateRunId:
    @pytest.mark.parametrize("run_id", ["r", "run-2024-01-01", "a" * 200, "0b8f.c"])
    def test_valid_run_ids_are_returned(self, run_id: str) -> None:
        """Single-segment ids up to 200 characters are accepted."""
        assert validate_run_id(run_id) == run_id

    @pytest.mark.parametrize(
        ("run_id", "rule"),
        [
            ("", "empty"),
            ("a" * 201, "201 characters"),
            ("a/b", "'/'"),
            ("a\\b", "'/'"),
            ("a\tb", "control"),
            ("..", "ends with '.'"),
            ("run.", "ends with '.'"),
        ],
    )
    def test_invalid_run_ids_are_refused_with_the_rule(self, run_id: str, rule: str) -> None:
        """A run id that cannot be one name segment raises ConfigError('run_id') naming the rule."""
        with pytest.raises(ConfigError) as info:
            validate_run_id(run_id)
        assert info.value.option == "run_id"
        assert rule in str(info.value)


class TestSegmentName:
    @pytest.mark.parametrize(
        ("path", "index", "expected"),
        [
            ("out/a.csv", 0, "out/a.csv"),
            ("out/a.csv", 3, "out/a.seg000003.csv"),
            ("out/a", 3, "out/a.seg000003"),
            ("out.d/a", 1, "out.d/a.seg000001"),
            ("a.tar.gz", 12, "a.tar.seg000012.gz"),
            (".hidden", 2, ".hidden.seg000002"),
            ("out/2024-01-01T00:00:00.123+00:00", 1, "out/2024-01-01T00:00:00.123+00:00.seg000001"),
            ("a.csv", MAX_SEGMENT_INDEX, "a.seg999999.csv"),
        ],
    )
    def test_examples(self, path: str, index: int, expected: str) -> None:
        """Segment n >= 1 inserts .segNNNNNN before the final extension, or appends it."""
        assert segment_name(path, index) == expected

    @pytest.mark.parametrize("index", [-1, MAX_SEGMENT_INDEX + 1, True])
    def test_out_of_range_index_is_refused(self, index: int) -> None:
        """Only 0..999,999 are segment indexes (fixed width keeps names sortable)."""
        with pytest.raises(ValueError, match="segment index"):
            segment_name("a.csv", index)

    def test_derived_name_over_the_length_limit_is_a_config_error(self) -> None:
        """A path with no room for the segment suffix fails as a blob_path problem."""
        with pytest.raises(ConfigError) as info:
            segment_name("x" * 1020 + ".csv", 1)
        assert info.value.option == "blob_path"

    @given(blob_paths, segment_indexes)
    def test_round_trip(self, path: str, index: int) -> None:
        """parse_segment_index inverts segment_name exactly."""
        assert parse_segment_index(path, segment_name(path, index)) == index

    @given(blob_paths, segment_indexes, segment_indexes)
    def test_names_are_distinct_and_sort_by_index(self, path: str, i: int, j: int) -> None:
        """Different indexes give different names; names of indexes >= 1 sort like the indexes."""
        a, b = segment_name(path, i), segment_name(path, j)
        assert (a == b) == (i == j)
        if i >= 1 and j >= 1:
            assert (a < b) == (i < j)

    @given(blob_paths, segment_indexes)
    def test_segment_names_are_valid_blob_names(self, path: str, index: int) -> None:
        """Every derived segment name passes the blob-name rules."""
        assert validate_blob_path(segment_name(path, index)) == segment_name(path, index)

    @given(blob_paths, st.text(max_size=40))
    def test_parse_accepts_only_names_segment_name_produces(self, path: str, name: str) -> None:
        """Whatever parse returns, segment_name gives back the very name parsed."""
        index = parse_segment_index(path, name)
        if index is not None:
            assert segment_name(path, index) == name

    @pytest.mark.parametrize(
        "name",
        [
            "out/a.seg000000.csv",
            "out/a.seg00003.csv",
            "out/a.seg0000003.csv",
            "out/a.seg00000x.csv",
            "out/b.seg000003.csv",
            "out/a.seg000003.tsv",
            "out/a.csv.seg000003",
            "out/a.seg\u0660\u0660\u0660\u0660\u0660\u0663.csv",
        ],
    )
    def test_parse_refuses_near_misses(self, name: str) -> None:
        """Index 0 spelled out, wrong widths, other stems/extensions and non-ASCII digits are not segments."""
        assert parse_segment_index("out/a.csv", name) is None


class TestManifestAndPointerNames:
    def test_manifest_name_and_prefix(self) -> None:
        """A run's manifest lives under '<blob_path>.manifest/'."""
        assert manifest_prefix("out/a.csv") == "out/a.csv.manifest/"
        assert manifest_name("out/a.csv", "run-1") == "out/a.csv.manifest/run-1"
        assert manifest_name("out/a.csv", "run-1").startswith(manifest_prefix("out/a.csv"))

    def test_run_pointer_name(self) -> None:
        """The per-run pointer is keyed by run id and template digest."""
        assert (
            run_pointer_name("0123456789abcdef", "run-1")
            == ".elspeth-appendsink/runs/run-1/0123456789abcdef.json"
        )

    @pytest.mark.parametrize("run_id", ["", "a/b", "x" * 201, "bad\x01"])
    def test_bad_run_ids_are_refused_in_every_derived_name(self, run_id: str) -> None:
        """Manifest and pointer names refuse run ids that are not one clean segment."""
        with pytest.raises(ConfigError):
            manifest_name("out/a.csv", run_id)
        with pytest.raises(ConfigError):
            run_pointer_name("0123456789abcdef", run_id)

    def test_pointer_refuses_a_malformed_digest(self) -> None:
        """A digest is 16 lowercase hex digits, as BlobPathTemplate makes it."""
        with pytest.raises(ValueError, match="16 lowercase hex"):
            run_pointer_name("../../etc", "run-1")


class TestBlobPathTemplate:
    def test_renders_run_id_and_timestamp(self) -> None:
        """Both variables render into a validated path."""
        template = BlobPathTemplate("out/{{ run_id }}/{{ timestamp }}.csv", "c1")
        assert template.render("r1", "2024-05-01T10:00:00+00:00") == "out/r1/2024-05-01T10:00:00+00:00.csv"
        assert template.uses_run_id and template.uses_timestamp and not template.is_static

    def test_static_template(self) -> None:
        """A template without variables renders the same path on every run."""
        template = BlobPathTemplate("out/all.csv", "c1")
        assert template.is_static and not template.uses_run_id and not template.uses_timestamp
        assert template.render("a", "t") == template.render("b", "u") == "out/all.csv"

    def test_syntax_error_is_a_config_error(self) -> None:
        """A template that does not parse fails at construction with the line number."""
        with pytest.raises(ConfigError, match="syntax at line 1") as info:
            BlobPathTemplate("out/{{ run_id ", "c1")
        assert info.value.option == "blob_path"

    def test_unknown_variable_is_named(self) -> None:
        """A variable other than run_id/timestamp fails at construction, not at the first write."""
        with pytest.raises(ConfigError, match="'date'") as info:
            BlobPathTemplate("out/{{ date }}/{{ run_id }}.csv", "c1")
        assert info.value.option == "blob_path"
        assert "run_id" in str(info.value) and "timestamp" in str(info.value)

    @pytest.mark.parametrize("source", ["", "   "])
    def test_empty_template_is_refused(self, source: str) -> None:
        """blob_path must say something."""
        with pytest.raises(ConfigError, match="non-empty"):
            BlobPathTemplate(source, "c1")

    @pytest.mark.parametrize(
        ("source", "rule"),
        [
            ("out/../{{ run_id }}", "'..' segment"),
            ("out\\{{ run_id }}", "backslash"),
            ("/{{ run_id }}", "start"),
        ],
    )
    def test_static_text_is_validated_at_construction(self, source: str, rule: str) -> None:
        """Invalid static text is found by rendering placeholders when the option is read."""
        with pytest.raises(ConfigError, match=rule):
            BlobPathTemplate(source, "c1")

    def test_sandbox_refuses_unsafe_attributes(self) -> None:
        """The sandbox blocks attribute escapes; the failure is a ConfigError."""
        with pytest.raises(ConfigError, match="SecurityError"):
            BlobPathTemplate("{{ run_id.__class__ }}", "c1")

    def test_render_validates_the_result(self) -> None:
        """A run id that makes an invalid name is refused when rendering."""
        template = BlobPathTemplate("out/{{ run_id }}.csv", "c1")
        with pytest.raises(ConfigError):
            template.render("a//b", "t")

    def test_render_checks_room_for_derived_names(self) -> None:
        """A rendered path too long for its manifest name fails before anything is written."""
        template = BlobPathTemplate("x" * 1000 + "{{ run_id }}", "c1")
        with pytest.raises(ConfigError, match="no room") as info:
            template.render("r" * 20, "t")
        assert info.value.option == "blob_path"

    def test_digest_depends_on_container_and_source(self) -> None:
        """template_digest is 16 hex of sha256(container + newline + source)."""
        import hashlib

        template = BlobPathTemplate("out/{{ run_id }}.csv", "c1")
        expected = hashlib.sha256(b"c1\nout/{{ run_id }}.csv").hexdigest()[:16]
        assert template.template_digest == expected
        assert BlobPathTemplate("out/{{ run_id }}.csv", "c2").template_digest != expected
        assert BlobPathTemplate("out/{{run_id}}.csv", "c1").template_digest != expected

    def test_no_autoescape(self) -> None:
        """Characters HTML-escaping would rewrite reach the blob name unchanged."""
        assert BlobPathTemplate("a&b/{{ run_id }}", "c1").render("x<y", "t") == "a&b/x<y"
