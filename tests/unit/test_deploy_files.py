"""The production files, checked without a Docker engine (none runs on these machines).

``docker-compose.yml`` is validated against the Compose Specification's JSON schema (the copy
vendored by check-jsonschema) and for the links a schema cannot see; the ``Dockerfile`` is linted by
hadolint. Both tools come with the test extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: it is part of the test extra (make install)")
    return path


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(ROOT / "docker-compose.yml")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_tool("hadolint"), "--failure-threshold", "info",
                             str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_links_resolve_and_settings_exist() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "redis", "api", "worker"} <= set(services)
    volumes = set(compose.get("volumes") or {})
    known_settings = {f"LETHE_{name.upper()}" for name in Settings.model_fields}
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            assert source in volumes, f"{name} mounts undeclared volume {source}"
        for variable in service.get("environment") or {}:
            if variable.startswith("LETHE_") and variable != "LETHE_DB_PASSWORD":
                assert variable in known_settings, f"{name} sets {variable}, not a Lethe setting"
    # The API and the worker share the artifact volume and the same settings.
    assert services["api"]["environment"] == services["worker"]["environment"]
    assert services["api"]["volumes"] == services["worker"]["volumes"]


def test_dockerfile_runs_as_non_root_in_a_separate_runtime_stage() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage build expected"
    after_last_from = lines[lines.index(stages[-1]):]
    users = [ln.split(None, 1)[1] for ln in after_last_from if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
