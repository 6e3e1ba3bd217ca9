"""docker-compose.yml against the Compose Specification schema vendored in check-jsonschema."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml
from deploy_files import COMPOSE_FILE, ROOT, compose


def _check_compose(path: Path) -> tuple[int, dict[str, object]]:
    # --builtin-schema reads the schema shipped inside the package: no download.
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         "--output-format", "json", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    return result.returncode, json.loads(result.stdout)


def test_compose_file_matches_the_compose_specification() -> None:
    """check-jsonschema finds no schema error in docker-compose.yml."""
    returncode, report = _check_compose(COMPOSE_FILE)
    assert report["status"] == "ok", json.dumps(report, indent=2)
    assert returncode == 0


def test_compose_schema_rejects_a_misspelt_service_key(tmp_path: Path) -> None:
    """The same check fails on a copy of the compose file whose chatstream service has a typo."""
    broken = copy.deepcopy(compose())
    member = broken["services"]["chatstream"]
    member["stop_grace_periods"] = member.pop("stop_grace_period")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    returncode, report = _check_compose(path)
    assert report["status"] == "fail"
    assert "stop_grace_periods" in json.dumps(report["errors"])
    assert returncode != 0
