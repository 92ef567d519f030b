"""`make run` as a newcomer runs it: scripts/run.sh on SQLite, the demo decided, Ctrl-C.

The script runs in a fresh environment naming only a SQLite file, a spare Redis database and
free ports; its .env and logs go to a temporary directory (GATEKEEPER_ENV_FILE, RUN_DIR), so a
developer's .env, run/ and db.sqlite3 are left alone. No PostgreSQL, no pytest-django database.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from gatekeeper.env import dotenv_enabled, load_dotenv, parse_dotenv
from tests.processes import started_with

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/14"  # the suite uses /15, `make run` /0
DEMO_PROJECT = "prj_demo_shopweb"
# simulator/scenarios/demo.yaml decides both gates about 30 s after the simulator starts; the
# rest is start-up (migrate on a new SQLite file) and a slow machine's margin.
DEMO_TIMEOUT = 180.0

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(DEMO_TIMEOUT + 120)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_sigint() -> None:
    # A shell started with SIGINT ignored can never trap it, and pytest run in the background by
    # a non-interactive shell (CI) inherits it ignored: give the script a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def broker() -> Iterator[str]:
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    yield BROKER
    client.flushdb()


def test_make_run_plays_the_demo_on_sqlite_and_stops_on_ctrl_c(tmp_path: Path, broker: str) -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("finds the script's processes through /proc")
    env_file, run_dir, sim_port = tmp_path / ".env", tmp_path / "run", free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "CELERY_BROKER_URL": broker,
        "WEB_PORT": str(free_port()),
        "SIM_PORT": str(sim_port),
        "RUN_DIR": str(run_dir),
        "GATEKEEPER_ENV_FILE": str(env_file),
        "GATEKEEPER_DOTENV": "1",  # `make test` turns .env off; this test is about reading it
    }
    marker = f"GATEKEEPER_ENV_FILE={env_file}"
    repo_env_before = (ROOT / ".env").exists()
    output_path = tmp_path / "run.out"
    with output_path.open("w") as output:
        script = subprocess.Popen(
            ["bash", "scripts/run.sh"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
            preexec_fn=default_sigint,  # noqa: PLW1509 (no threads to race with here)
        )
    sim = httpx.Client(base_url=f"http://127.0.0.1:{sim_port}/_sim", timeout=5)

    def output() -> str:
        return output_path.read_text(errors="replace")

    def logs() -> dict[str, str]:
        return {log.name: log.read_text(errors="replace") for log in sorted(run_dir.glob("*.log"))}

    try:
        # 1. Both verdicts reach Vercel (the simulator): the good build promoted, then the bad
        #    one, live on its own, rolled back to it.
        deadline = time.monotonic() + DEMO_TIMEOUT
        promotes: list[str] = []
        rollbacks: list[str] = []
        while time.monotonic() < deadline and not (promotes and rollbacks):
            assert script.poll() is None, f"scripts/run.sh exited with {script.returncode}"
            try:
                sent = sim.get("/requests", params={"service": "vercel", "method": "POST"}).json()
            except httpx.HTTPError:  # not up yet
                sent = {"requests": []}
            paths = [r["path"] for r in sent["requests"] if r["status"] < 300]
            promotes = [p for p in paths if re.fullmatch(rf"/v\d+/projects/{DEMO_PROJECT}/promote/\w+", p)]
            rollbacks = [p for p in paths if re.fullmatch(rf"/v\d+/projects/{DEMO_PROJECT}/rollback/\w+", p)]
            time.sleep(1)
        deployments = sim.get(f"/vercel/projects/{DEMO_PROJECT}").json()["deployments"]
        by_message = {d["meta"]["githubCommitMessage"]: d["id"] for d in deployments}
        good = by_message["checkout: fix tax rounding"]
        errors = len(re.findall(r'HTTP/[\d.]+" 5\d\d ', logs().get("web.log", "")))
        assert promotes == [f"/v10/projects/{DEMO_PROJECT}/promote/{good}"], (
            f"no promote of the good build {good} within {DEMO_TIMEOUT:.0f}s; web answered 5xx {errors} times"
        )
        assert rollbacks == [f"/v1/projects/{DEMO_PROJECT}/rollback/{good}"], (
            f"no rollback to the good build {good} within {DEMO_TIMEOUT:.0f}s"
        )

        # 2. The .env it wrote is what manage.py reads: no DATABASE_URL given here.
        dotenv = env_file.read_text()
        assert dotenv.startswith("# ")
        assert f"DATABASE_URL={env['DATABASE_URL']}\n" in dotenv
        assert f"CELERY_BROKER_URL={broker}\n" in dotenv
        for name in ("SECRET_KEY", "VERCEL_WEBHOOK_SECRET", "SENTRY_WEBHOOK_SECRET", "SLO_AUTH_TOKEN"):
            assert re.search(rf"^{name}=[\w-]{{40,}}$", dotenv, re.MULTILINE), name
        assert (ROOT / ".env").exists() == repo_env_before, "scripts/run.sh wrote the repository's .env"
        report = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", "gate_report"],
            cwd=ROOT,
            env={"PATH": env["PATH"], "GATEKEEPER_ENV_FILE": str(env_file), "GATEKEEPER_DOTENV": "1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "promoted" in report
        assert "rolled_back" in report

        # 3. Nothing went wrong on the way.
        for name, text in logs().items():
            assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
        assert not re.search(r'HTTP/[\d.]+" 5\d\d ', logs()["web.log"]), logs()["web.log"][-3000:]
        assert "Traceback" not in output()
        beat = logs()["beat.log"]
        assert "Sending due task" not in beat, "beat's per-second sends are DEBUG, not INFO"
        worker = logs()["worker.log"]
        assert "Task releases.dispatch_due[" not in worker, "the dispatcher's receipts are DEBUG"
        assert "Task releases.run_action[" in worker, "the worker still logs the work that matters"

        # 4. Ctrl-C: everything stops, "stopped", exit 0, nothing left behind.
        os.killpg(script.pid, signal.SIGINT)
        assert script.wait(timeout=30) == 0
        assert "stopped" in output().splitlines()
        deadline = time.monotonic() + 5
        while started_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started_with(marker) == [], "processes the script started are still running"
    finally:
        sim.close()
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
        for pid in started_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(f"--- scripts/run.sh output (exit {script.returncode}) ---\n{output()}")


def test_dotenv_is_read_without_overriding_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What settings do with .env (gatekeeper/env.py), without starting anything."""
    (tmp_path / "my.env").write_text(
        "# written by make run\n"
        "\n"
        "DATABASE_URL=sqlite:///from-dotenv.sqlite3\n"
        "export SECRET_KEY='s3cret # not a comment'\n"
        'SLACK_BOT_TOKEN="xoxb-\\"quoted\\"" # a comment\n'
        "SENTRY_AUTH_TOKEN=bare value # a comment\n"
    )
    monkeypatch.setenv("GATEKEEPER_ENV_FILE", "my.env")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-environment.sqlite3")
    for name in ("SECRET_KEY", "SLACK_BOT_TOKEN", "SENTRY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    assert load_dotenv(tmp_path) == {}, "skipped under pytest unless GATEKEEPER_DOTENV=1"
    monkeypatch.setenv("GATEKEEPER_DOTENV", "1")
    assert load_dotenv(tmp_path) == {
        "SECRET_KEY": "s3cret # not a comment",
        "SLACK_BOT_TOKEN": 'xoxb-"quoted"',
        "SENTRY_AUTH_TOKEN": "bare value",
    }
    assert os.environ["DATABASE_URL"] == "sqlite:///from-environment.sqlite3"  # the environment wins
    monkeypatch.setenv("GATEKEEPER_DOTENV", "0")
    assert not dotenv_enabled()
    with pytest.raises(ImproperlyConfigured, match=r"my\.env:2: expected KEY=VALUE"):
        parse_dotenv("A=1\nnot a setting\n", "my.env")
