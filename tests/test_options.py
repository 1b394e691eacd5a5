"""Typed plug-in options: one parser for every registry, typos are errors, values get their types."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from typer.testing import CliRunner

from kspacify import phase
from kspacify.cli import app
from kspacify.commands.common import escape
from kspacify.errors import OptionError, UsageError
from kspacify.options import build_options, describe, parse_pairs


@dataclass(frozen=True)
class Schema:
    flag: bool = False
    count: int = 3
    scale: float = field(default=1.0, metadata={"help": "a scale"})
    mode: Literal["a", "b"] = "a"
    pair: tuple[float, float] = (0.0, 1.0)
    many: tuple[int, ...] = ()
    where: Path | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")


def test_text_values_get_the_annotated_types():
    options = build_options(Schema, {"flag": "yes", "count": "7", "scale": "2.5", "mode": "b", "pair": "1,2",
                                     "many": "[1, 2, 3]", "where": "/tmp/x", "limit": "none"}, "test")  # fmt: skip
    assert options == Schema(True, 7, 2.5, "b", (1.0, 2.0), (1, 2, 3), Path("/tmp/x"), None)
    assert build_options(Schema, {"pair": [3, 4], "limit": 5, "flag": False}, "test").pair == (3.0, 4.0)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"cuont": "1"}, "unknown option.*cuont.*known: flag, count, scale"),
        ({"flag": "maybe"}, "flag must be true or false"),
        ({"count": "1.5"}, "count must be an integer"),
        ({"scale": "inf"}, "finite"),
        ({"scale": "nan"}, "finite"),
        ({"mode": "c"}, "mode must be one of a, b"),
        ({"pair": "1,2,3"}, "expects 2 values"),
        ({"count": "-1"}, "test: count must be >= 0"),
    ],
)
def test_bad_values_and_unknown_keys_are_option_errors(values, message):
    with pytest.raises(OptionError, match=message):
        build_options(Schema, values, "test")
    assert issubclass(OptionError, UsageError) and issubclass(OptionError, ValueError)


def test_describe_lists_fields_with_types_and_defaults():
    listed = {o.name: o for o in describe(Schema)}
    assert listed["pair"].type == "float,float" and listed["pair"].default == (0.0, 1.0)
    assert listed["mode"].type == "a|b" and listed["scale"].help == "a scale"
    assert listed["limit"].type == "int or none"


def test_pairs_keep_text_and_reject_missing_equals():
    assert parse_pairs(["a=1", "b-c=x=y"]) == {"a": "1", "b_c": "x=y"}
    with pytest.raises(OptionError, match="KEY=VALUE"):
        parse_pairs(["novalue"])


@pytest.mark.parametrize("name, typo", [("smooth", {"smothness": 0.5}), ("physics", {"b0_teslaa": 3}), ("zero", {"x": 1})])
def test_every_method_rejects_unknown_options(name, typo):
    with pytest.raises(OptionError, match=f"{name} phase: unknown option"):
        phase.create(name, **typo)


def test_nonsense_values_never_reach_the_synthesizer():
    for values in ({"amplitude": "inf"}, {"amplitude": "nan"}, {"smoothness": "1e308"}, {"smoothness": 0}):
        with pytest.raises(OptionError):
            phase.create("smooth", **values)
    out = phase.create("smooth", smoothness="10", amplitude="100").synthesize(np.ones((1, 16, 16), np.float32), np.random.default_rng(0))
    assert np.isfinite(out).all()


def test_convert_rejects_a_mistyped_phase_option(tmp_path):
    result = CliRunner().invoke(app, ["convert", "examples/data/nifti", str(tmp_path / "out"), "--phase", "smooth",
                                      "--phase-opt", "smoothnes=0.2", "--salt", "t"])  # fmt: skip
    assert result.exit_code == 2
    assert "smooth phase: unknown option(s) smoothnes; known: smoothness, amplitude" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_methods_lists_each_methods_options_and_defaults():
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0
    assert "--phase-opt smoothness=0.15  (float)" in result.stdout
    assert "--phase-opt b0_tesla=[1.5, 7.0]  (float,float)" in result.stdout
    assert "--phase-opt background=\"noise\"  (noise|model)" in result.stdout
    assert "device" not in [line.split("--phase-opt ")[-1].split("=")[0] for line in result.stdout.splitlines() if "--phase-opt" in line]


def test_messages_escape_control_characters():
    assert escape("a\nb") == "a\\nb" and escape("x\x1b[2Jy") == "x\\x1b[2Jy" and escape("é ok") == "é ok"
    assert json.loads(json.dumps(escape("\u2028"))) == "\\u2028"
