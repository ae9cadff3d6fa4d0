"""The architecture registry (torch-free, for the API) and ``lethe architectures list/check``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.errors import InvalidInput
from app.services import architectures as registry
from app.settings import get_settings
from app.unlearning.architectures import ARCHITECTURES


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def set_(mapping: dict[str, str]) -> None:
        monkeypatch.setenv("LETHE_ARCHITECTURES", json.dumps(mapping))
        get_settings.cache_clear()

    yield set_
    monkeypatch.delenv("LETHE_ARCHITECTURES", raising=False)
    get_settings.cache_clear()


def test_builtin_names_match_the_math_core() -> None:
    assert registry.BUILTIN_ARCHITECTURES == ARCHITECTURES


def test_setting_and_entry_points_register_names(register, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    eps = [EntryPoint("from-ep", "pkg.mod:make", registry.ENTRY_POINT_GROUP),
           EntryPoint("both", "pkg.ep:make", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [ep for ep in eps if ep.group == group])
    register({"both": "pkg.env:make", "cnn": "tests.owner_architectures:small_cnn"})
    assert registry.registered_architectures() == {
        "from-ep": "pkg.mod:make", "both": "pkg.env:make",  # the setting wins a clash
        "cnn": "tests.owner_architectures:small_cnn"}
    assert registry.architecture_choices() == [*ARCHITECTURES, "both", "cnn", "from-ep"]
    assert registry.check_architecture_name("allcnn") is None
    assert registry.check_architecture_name("cnn") == "tests.owner_architectures:small_cnn"


def test_unknown_name_lists_the_choices(register) -> None:  # type: ignore[no-untyped-def]
    register({"cnn": "tests.owner_architectures:small_cnn"})
    with pytest.raises(InvalidInput, match="unknown architecture 'vgg'; choose one of mlp, logreg, "
                                           "allcnn, resnet18, cnn") as info:
        registry.check_architecture_name("vgg")
    assert info.value.extra["field"] == "architecture"
    assert info.value.extra["choices"] == [*ARCHITECTURES, "cnn"]


@pytest.mark.parametrize(("mapping", "message"), [
    ({"mlp": "pkg.mod:make"}, "shadows a built-in"),
    ({"cnn": "pkg/mod.py"}, "not 'package.module:factory'"),
    ({"cnn": "pkg.mod"}, "not 'package.module:factory'"),
])
def test_bad_registrations_are_named(register, mapping, message) -> None:  # type: ignore[no-untyped-def]
    register(mapping)
    with pytest.raises(InvalidInput, match=message):
        registry.check_architecture_name("cnn")


def test_cli_lists_and_checks(register, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LETHE_HOME", str(tmp_path))
    register({"cnn": "tests.owner_architectures:small_cnn",
              "owner-dropout": "tests.owner_architectures:with_dropout"})
    runner = CliRunner()
    listed = runner.invoke(cli, ["architectures", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["cnn"] == "tests.owner_architectures:small_cnn"

    good = runner.invoke(cli, ["architectures", "check", "cnn", "--dataset", "digits"])
    assert good.exit_code == 0, good.output
    assert "[ok] determinism" in good.output and good.output.strip().endswith("admitted")

    bad = runner.invoke(cli, ["architectures", "check", "owner-dropout", "--dataset", "digits",
                              "--json"])
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.output)
    assert not report["passed"] and report["input_shape"] == [1, 8, 8]
    assert report["guards"][-1]["guard"] == "supported layers"
    assert "Dropout" in report["guards"][-1]["detail"]

    unknown = runner.invoke(cli, ["architectures", "check", "vgg", "--dataset", "digits"])
    assert unknown.exit_code == 2 and "choose one of" in unknown.output
