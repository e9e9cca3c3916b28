"""docker-compose.yml, the Dockerfile and .env.example stay true to the code (Docker does not
run here): every HELPDESK_* variable they pass is a real setting, every image is pinned."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpdesk.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {f"HELPDESK_{name.upper()}" for name in Settings.model_fields}
PINNED = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def environment_names(service: dict[str, Any]) -> set[str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.split("=", 1)[0] for item in env}
    return set(env)


def test_the_stack_has_every_piece_as_its_own_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "temporal", "temporal-ui", "redis", "clamav", "api", "worker"):
        assert name in services
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["build"] == "."
    assert services["worker"]["build"] == "."


def test_every_helpdesk_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    passed: set[str] = set()
    for name, service in compose["services"].items():
        names = {n for n in environment_names(service) if n.startswith("HELPDESK_")}
        unknown = names - SETTINGS
        assert not unknown, f"service {name} passes unknown settings {sorted(unknown)}"
        passed |= names
    # Substitutions like ${HELPDESK_X} name settings too.
    text = (ROOT / "docker-compose.yml").read_text()
    substituted = set(re.findall(r"\$\{(HELPDESK_[A-Z0-9_]+)", text))
    assert substituted - SETTINGS <= {"HELPDESK_PUBLIC_API_URL"}
    assert {"HELPDESK_DATABASE_URL", "HELPDESK_TEMPORAL_ADDRESS", "HELPDESK_REDIS_URL"} <= passed


def test_production_services_carry_every_required_secret(compose: dict[str, Any]) -> None:
    secrets = {
        f"HELPDESK_{name.upper()}"
        for name in ("jwt_secret", "kek", "blind_index_key", "audit_key", "payload_codec_key")
    }
    for name in ("api", "worker", "migrate"):
        env = compose["services"][name]["environment"]
        assert env["HELPDESK_ENVIRONMENT"] == "production"
        assert secrets <= set(env)
        for secret in secrets:
            # Required from the environment, never a default baked into the file.
            assert ":?" in env[secret]


def test_api_and_worker_split_the_work(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]["environment"]
    worker = compose["services"]["worker"]["environment"]
    assert api["HELPDESK_RUN_WORKER_IN_API"] == "false"
    assert api["HELPDESK_TEMPORAL_DEV_SERVER"] == "false"
    assert api["HELPDESK_TEMPORAL_TASK_QUEUE"] == worker["HELPDESK_TEMPORAL_TASK_QUEUE"]


def test_every_image_is_pinned_to_an_exact_version(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"service {name} has neither image nor build"
            continue
        assert PINNED.match(image), f"service {name}: image {image!r} is not pinned"


def test_dockerfile_base_image_is_pinned_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert bases
    for base in bases:
        assert PINNED.match(base), f"FROM {base} is not pinned"
    assert re.search(r"^USER\s+(?!root)\S+", dockerfile, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["helpdesk"]' in dockerfile


def test_env_example_names_only_real_settings() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = {
        line.split("=", 1)[0].strip()
        for line in lines
        if "=" in line and not line.lstrip().startswith("#")
    }
    helpdesk = {n for n in names if n.startswith("HELPDESK_")}
    assert helpdesk - SETTINGS == set()
    # It must not ship a secret value.
    for line in lines:
        if line.startswith(("HELPDESK_JWT_SECRET", "HELPDESK_KEK=", "HELPDESK_AUDIT_KEY")):
            assert line.split("=", 1)[1] == ""


@pytest.mark.parametrize("image", ["postgres:latest", "redis", "temporalio/ui:latest"])
def test_the_pin_rule_rejects_floating_tags(image: str) -> None:
    assert not PINNED.match(image)
