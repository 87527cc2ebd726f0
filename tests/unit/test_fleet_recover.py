"""``recover --prefix``'s command line: recognised only in its fleet form, refused clearly otherwise.

The recovery itself runs against real ELSPETH, PostgreSQL and Azurite in
``tests/elspeth/test_fleet.py``.
"""

from __future__ import annotations

import io

import pytest

from elspeth_appendsink.elspeth import fleet_recover


class TestCommandLine:
    def test_only_the_prefix_form_is_the_fleet_command(self) -> None:
        assert fleet_recover.is_fleet_recover(["--no-dotenv", "recover", "--prefix", "out/", "-s", "a.yaml"])
        assert fleet_recover.is_fleet_recover(["recover", "--prefix=out/", "-s", "a.yaml"])
        assert not fleet_recover.is_fleet_recover(["recover", "RUN", "-s", "a.yaml"])
        assert not fleet_recover.is_fleet_recover(["run", "-s", "a.yaml", "-x"])

    def test_the_request_keeps_every_settings_file_and_the_global_options(self) -> None:
        request = fleet_recover._parse(
            [
                "--no-dotenv",
                "recover",
                "--prefix",
                "out/",
                "-s",
                "a.yaml",
                "--settings=b.yaml",
                "--wait",
                "--workers",
                "3",
            ]
        )
        assert request.prefix == "out/" and [p.name for p in request.settings] == ["a.yaml", "b.yaml"]
        assert request.wait and request.workers == 3 and request.global_options == ["--no-dotenv"]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["recover", "--prefix", "out/"], "usage: recover --prefix P -s SETTINGS"),
            (["recover", "-s", "a.yaml"], "usage: recover --prefix P -s SETTINGS"),
            (
                ["recover", "--prefix", "out/", "-s", "a.yaml", "--workers", "0"],
                "--workers must be a positive",
            ),
            (["recover", "--prefix", "out/", "-s", "a.yaml", "RUN"], "unexpected 'RUN'"),
            (["recover", "--prefix", "out/", "-s"], "-s needs a value"),
        ],
    )
    def test_a_wrong_command_line_is_refused_and_changes_nothing(self, args: list[str], message: str) -> None:
        err = io.StringIO()
        assert fleet_recover.main(args, err=err, run_child=lambda argv: pytest.fail("no child may run")) == 1
        assert message in err.getvalue() and "Nothing was changed." in err.getvalue()
