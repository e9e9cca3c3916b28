"""The Azure templates (deploy/azure): checkov finds nothing, and they agree with the code.

checkov lives in its own virtualenv (scripts/install-checkov.sh, run by `make test`); without
it the scan skips and says how to install it. The consistency checks need nothing: every
HELPDESK_* variable the templates set is a real setting, every module and Key Vault secret
they name exists, and each environment's parameter file sets every required parameter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpdesk.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
AZURE = ROOT / "deploy" / "azure"
MAIN = AZURE / "main.bicep"


def _checkov() -> str | None:
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".tools/checkov/bin/checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("checkov")


def test_checkov_finds_nothing_in_the_templates() -> None:
    checkov = _checkov()
    if checkov is None:
        pytest.skip("checkov is not installed: run scripts/install-checkov.sh (make test does)")
    run = subprocess.run(
        [
            checkov,
            "--directory",
            str(AZURE),
            "--framework",
            "bicep",
            "--skip-download",  # offline: no guideline download from the vendor's API
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.stdout, run.stderr[-2000:]
    report = json.loads(run.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0]["summary"]
    results = reports[0]["results"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['file_path']}: {c['resource']})"
        for c in results["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["parsing_errors"] == 0, results.get("parsing_errors")
    # It really scanned the templates (Key Vault, storage, WAF, Redis... checks ran).
    assert summary["passed"] >= 40, summary
    # Every skip carries its reason in the template.
    for skipped in results["skipped_checks"]:
        assert skipped.get("check_result", {}).get("suppress_comment"), skipped["check_id"]


def _params(text: str) -> dict[str, bool]:
    """Parameters of a Bicep file: name -> has a default."""
    found = {}
    for match in re.finditer(r"^param (\w+) [\w.]+( =)?", text, re.MULTILINE):
        found[match.group(1)] = match.group(2) is not None
    return found


def test_every_helpdesk_variable_the_templates_set_is_a_setting() -> None:
    text = "\n".join(p.read_text() for p in AZURE.rglob("*.bicep"))
    names = set(re.findall(r"'(HELPDESK_[A-Z0-9_]+)'", text))
    known = {f"HELPDESK_{name.upper()}" for name in Settings.model_fields}
    assert names, "no HELPDESK_ settings found in the templates"
    assert names - known == set()
    # The production essentials are all there.
    for required in (
        "HELPDESK_ENVIRONMENT",
        "HELPDESK_DATABASE_URL",
        "HELPDESK_KEK_PROVIDER",
        "HELPDESK_AZURE_KEY_VAULT_URL",
        "HELPDESK_JWT_SECRET",
        "HELPDESK_BLIND_INDEX_KEY",
        "HELPDESK_AUDIT_KEY",
        "HELPDESK_PAYLOAD_CODEC_KEY",
        "HELPDESK_REDIS_URL",
        "HELPDESK_RUN_WORKER_IN_API",
        "HELPDESK_TRUSTED_PROXIES",
    ):
        assert required in names, required


def test_modules_and_secrets_referenced_exist() -> None:
    for bicep in AZURE.rglob("*.bicep"):
        for module in re.findall(r"^module \w+ '([^']+)'", bicep.read_text(), re.MULTILINE):
            assert (bicep.parent / module).is_file(), f"{bicep.name} uses missing {module}"
    main = MAIN.read_text()
    stored = set(re.findall(r"^  '([a-z0-9-]+)': ", main, re.MULTILINE))
    referenced = set(re.findall(r"secret: '([a-z0-9-]+)'", main))
    assert referenced and referenced <= stored, referenced - stored


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_parameter_files_set_every_required_parameter(environment: str) -> None:
    params = (AZURE / "params" / f"{environment}.bicepparam").read_text()
    assert "using '../main.bicep'" in params
    declared = _params(MAIN.read_text())
    assigned = set(re.findall(r"^param (\w+) =", params, re.MULTILINE))
    assert assigned - set(declared) == set(), "unknown parameters"
    required = {name for name, has_default in declared.items() if not has_default}
    assert required - assigned == set(), "required parameters not set"
    assert f"param environmentName = '{environment}'" in params
    # No secret is written into a parameter file: secure ones come from the environment.
    secure = re.findall(r"@secure\(\)\n(?:@description\([^\n]*\)\n)?param (\w+)", MAIN.read_text())
    assert secure
    for name in secure:
        for line in re.findall(rf"^param {name} = (.*)$", params, re.MULTILINE):
            assert line.startswith("readEnvironmentVariable("), f"{name} is written in the file"
