"""The supervisor of `chatstream run --workers N`, driven with stand-in member processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# A stand-in member: records its start (and the HTTP port it was given) in the log of its index,
# exits with FIRST_EXIT on its first start (always, when ALWAYS_FAIL is set), otherwise runs
# until SIGTERM and exits 0.
MEMBER = textwrap.dedent("""
    import os, signal, sys, time
    port = int(os.environ["CHATSTREAM_HTTP_PORT"])
    index = port - int(os.environ["PORT_BASE"]) if port else 0
    log = os.path.join(os.environ["LOG_DIR"], f"m{index}.log")
    with open(log, "a") as f:
        f.write(f"{port}\\n")
    starts = len(open(log).read().split())
    first_exit = int(os.environ["FIRST_EXIT"])
    failing = os.environ.get("ONLY_INDEX") in (None, str(index))
    if first_exit and failing and (starts == 1 or os.environ.get("ALWAYS_FAIL")):
        if "ONLY_INDEX" in os.environ:  # the others first: they are running when this one fails
            others = int(os.environ["WORKERS"])
            deadline = time.monotonic() + 20
            while len([n for n in os.listdir(os.environ["LOG_DIR"]) if n.endswith(".log")]) \
                    < others and time.monotonic() < deadline:
                time.sleep(0.05)
        sys.exit(first_exit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(5)
""")


def start_supervisor(tmp_path: Path, workers: int, first_exit: int = 0, port: int = 0,
                     always_fail: bool = False, max_deaths: int = 5,
                     only_index: int | None = None
                     ) -> tuple[subprocess.Popen[bytes], list[Path]]:
    script = tmp_path / "member.py"
    script.write_text(MEMBER)
    env = {"CHATSTREAM_HTTP_PORT": str(port), "PORT_BASE": str(port), "LOG_DIR": str(tmp_path),
           "FIRST_EXIT": str(first_exit), **({"ALWAYS_FAIL": "1"} if always_fail else {}),
           "WORKERS": str(workers),
           **({"ONLY_INDEX": str(only_index)} if only_index is not None else {})}
    code = (f"import sys\nfrom stream.app.supervisor import Supervisor\n"
            f"sys.exit(Supervisor({workers}, {env!r}, [sys.executable, {str(script)!r}], "
            f"max_deaths={max_deaths}).run())\n")
    logs = [tmp_path / f"m{i}.log" for i in range(workers)]
    return subprocess.Popen([sys.executable, "-c", code]), logs


def wait_for(condition, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def starts(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_sigterm_reaches_every_member_and_the_supervisor_exits_zero(tmp_path):
    """Two members run on ports P and P+1; SIGTERM stops both and the supervisor exits 0."""
    supervisor, logs = start_supervisor(tmp_path, workers=2, port=9100)
    wait_for(lambda: all(starts(log) for log in logs))
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=20) == 0
    assert [starts(log) for log in logs] == [["9100"], ["9101"]]


def test_a_member_that_dies_is_restarted(tmp_path):
    """A member exiting with an error on its first start is started again, then stops cleanly."""
    supervisor, logs = start_supervisor(tmp_path, workers=1, first_exit=3)
    wait_for(lambda: len(starts(logs[0])) >= 2)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=20) == 0


def test_members_that_keep_dying_make_the_supervisor_exit_non_zero(tmp_path):
    """A member that fails on every start ends the supervisor with exit code 1."""
    supervisor, logs = start_supervisor(tmp_path, workers=1, first_exit=3, always_fail=True,
                                        max_deaths=2)
    assert supervisor.wait(timeout=30) == 1
    assert len(starts(logs[0])) == 3  # the first start and two restarts, then it gave up


def test_a_member_refused_its_configuration_stops_the_supervisor_with_exit_two(tmp_path):
    """Exit 2 is a settings error: a restart would be refused the same, so no member is
    restarted, the others are stopped, and the supervisor exits 2 as the member did."""
    supervisor, logs = start_supervisor(tmp_path, workers=2, first_exit=2, port=9200,
                                        only_index=0)
    try:
        wait_for(lambda: all(starts(log) for log in logs))  # the healthy one runs meanwhile
        assert supervisor.wait(timeout=30) == 2
    finally:  # one that restarts its members forever must not outlive the test
        supervisor.kill()
    # Neither restarted; the healthy one was stopped (it runs a minute unless signalled).
    assert [starts(log) for log in logs] == [["9200"], ["9201"]]


def test_each_member_gets_its_own_group_instance_id():
    """With CHATSTREAM_GROUP_INSTANCE_ID set, member i gets '<id>-i'; unset, it stays unset."""
    from stream.app.supervisor import Supervisor

    static = Supervisor(2, {"CHATSTREAM_GROUP_INSTANCE_ID": "pod-a"})
    assert [static._member_env(i)["CHATSTREAM_GROUP_INSTANCE_ID"] for i in range(2)] == [
        "pod-a-0", "pod-a-1"]
    assert "CHATSTREAM_GROUP_INSTANCE_ID" not in Supervisor(2, {})._member_env(1)


def test_a_sigterm_while_members_start_stops_them_all(tmp_path):
    """A SIGTERM that comes while the members are being started (a pod deleted right after it
    started) reaches every member started, and none starts after it: the supervisor exits."""
    script = tmp_path / "member.py"
    script.write_text(MEMBER)
    env = {"CHATSTREAM_HTTP_PORT": "9200", "PORT_BASE": "9200", "LOG_DIR": str(tmp_path),
           "FIRST_EXIT": "0"}
    code = textwrap.dedent(f"""
        import os, signal, sys
        from stream.app.supervisor import Supervisor

        class SignalledWhileStarting(Supervisor):
            def _start(self, member):
                super()._start(member)
                if member.index == 0:
                    os.kill(os.getpid(), signal.SIGTERM)

        sys.exit(SignalledWhileStarting(3, {env!r}, [sys.executable, {str(script)!r}]).run())
    """)
    supervisor = subprocess.Popen([sys.executable, "-c", code])
    assert supervisor.wait(timeout=20) == 0
    assert not (tmp_path / "m1.log").exists() and not (tmp_path / "m2.log").exists()


def test_per_member_variables_are_found_in_any_case(monkeypatch):
    """Settings read variable names in any case; so does the supervisor when it gives each
    member its own HTTP port and static instance id."""
    from stream.app.supervisor import Supervisor
    from stream.settings import load_settings

    supervisor = Supervisor(2, {"chatstream_http_port": "9100",
                                "Chatstream_Group_Instance_Id": "pod-a", "chatstream_workers": "2"})
    for index in range(2):
        for variable in list(os.environ):
            if variable.upper().startswith("CHATSTREAM_"):
                monkeypatch.delenv(variable)
        for variable, value in supervisor._member_env(index).items():
            monkeypatch.setenv(variable, value)
        settings = load_settings()
        assert (settings.http_port, settings.group_instance_id, settings.workers) == (
            9100 + index, f"pod-a-{index}", 1)


@pytest.mark.parametrize("given", [" 8080", "+8080", "8080\n", "8_080"])
def test_each_member_gets_its_own_port_however_the_setting_is_spelt(given):
    """Whatever the settings read as port P (padding from a secret file, a sign), member i
    serves on P + i: members sharing a port would die binding it, one after another."""
    from stream.app.supervisor import Supervisor

    supervisor = Supervisor(3, {"CHATSTREAM_HTTP_PORT": given})
    assert [supervisor._member_env(i)["CHATSTREAM_HTTP_PORT"] for i in range(3)] == [
        "8080", "8081", "8082"]


def test_ports_past_the_last_one_are_refused_before_any_member_starts():
    from stream.app.supervisor import Supervisor
    from stream.settings import SettingsError

    supervisor = Supervisor(3, {"CHATSTREAM_HTTP_PORT": "65534"}, ["false"])
    with pytest.raises(SettingsError, match="65536"):
        supervisor.run()
    assert supervisor._members == []


@pytest.mark.parametrize(("ran_s", "restart_in_s"), [(61.0, 0.5), (5.0, 10.0)])
def test_a_member_that_ran_well_is_restarted_promptly_after_earlier_deaths(ran_s, restart_in_s):
    """The backoff grows while a member keeps dying, and starts over once it has run longer
    than the death window: a crash a day must not wait out the backoff of last week's."""
    from stream.app.supervisor import Supervisor, _Member

    now = 1_000.0
    supervisor = Supervisor(1, {}, ["true"], clock=lambda: now)
    exited = subprocess.Popen(["true"])
    exited.wait()
    member = _Member(0, exited, started_at=now - ran_s, backoff_s=10.0)
    assert supervisor._check(member)
    assert member.restart_at == now + restart_in_s
