"""The warm process of ``kdinterp`` under ``dvc repro`` (src/kdinterp/workflow/warm.py).

The stage commands of ``dvc repro`` are forked from a server that imported torch once. They must write exactly what a
fresh process writes, fail the same way, and fall back to a fresh process when no server can start.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdinterp.workflow.warm import PACKAGE, eligible, server_key, stop_servers
from tests.conftest import BIN, git, run_dvc, tool_env
from tests.tiny_study import ROOT, copy_study

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the warm process forks: Linux only")
#: One model's per-model stages; the tiny study built them through the warm process.
STAGES = ("train_student@scratch-0", "evaluate_student@scratch-0", "dissect_student@scratch-0",
          "saliency_student@scratch-0", "diffroar_student@scratch-0")


def test_only_dvc_stages_on_linux_go_warm():
    stage = {"DVC_STAGE": "evaluate_student@scratch-0"}
    assert eligible(stage, ["kdinterp", "evaluate", "scratch-0"]) == (sys.platform == "linux")
    assert not eligible({}, ["kdinterp", "evaluate", "scratch-0"])
    assert not eligible({**stage, "KDINTERP_WARM": "0"}, ["kdinterp", "evaluate", "scratch-0"])
    assert not eligible(stage, ["kdinterp"])


def test_the_key_ignores_per_call_variables_and_follows_the_environment_and_the_sources(tmp_path):
    package = tmp_path / "kdinterp"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "2"}
    key = server_key(env, package)
    assert server_key({**env, "DVC_STAGE": "a@b", "DVC_ROOT": "/x", "PWD": "/y", "PYTEST_CURRENT_TEST": "t"},
                      package) == key
    assert server_key({**env, "OMP_NUM_THREADS": "1"}, package) != key
    assert server_key({**env, "KDINTERP_PORTABLE": "1"}, package) != key
    (package / "cli.py").write_text((package / "cli.py").read_text() + "\n# edited\n")
    assert server_key(env, package) != key


def _missing_model(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kdinterp"), "evaluate", "no-such-model"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@linux_only
def test_a_user_error_reads_the_same_warm_fresh_and_when_no_server_can_start(tmp_path, _warm_servers):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    sockets = _warm_servers / "user-error"
    fresh = _missing_model(tool_env(DVC_STAGE="evaluate_student@x", KDINTERP_WARM="0"))
    fallback = _missing_model(tool_env(DVC_STAGE="evaluate_student@x", KDINTERP_WARM_DIR=str(blocked)))
    warm = _missing_model(tool_env(DVC_STAGE="evaluate_student@x", KDINTERP_WARM_DIR=str(sockets)))
    try:
        assert list(sockets.glob("*.sock")), "no server was started"
    finally:
        assert stop_servers(sockets) == 1
    for done in (fresh, fallback, warm):
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert done.stderr.startswith("error: no model 'no-such-model' in params.yaml"), done.stderr
    assert fallback.stderr == fresh.stderr == warm.stderr
    assert not list(sockets.glob("*.sock")), "stop_servers left a socket"


@linux_only
def test_a_socket_path_too_long_for_linux_runs_the_command_without_a_server(tmp_path):
    sockets = tmp_path / ("x" * 120)
    done = _missing_model(tool_env(DVC_STAGE="evaluate_student@x", KDINTERP_WARM_DIR=str(sockets)))
    assert done.returncode == 1 and done.stderr.startswith("error: no model 'no-such-model'"), done.stderr
    assert not list(sockets.glob("*.sock"))


@linux_only
@pytest.mark.slow
def test_stages_run_without_the_warm_process_write_the_bytes_it_wrote(tiny_study, tmp_path):
    project = copy_study(tiny_study, tmp_path / "study")
    run_dvc(project, "repro", "--force", "--single-item", *STAGES, env=tool_env(KDINTERP_WARM="0"))
    assert git(project, "status", "--porcelain") == "", "a stage run in its own process wrote other bytes"
    assert "up to date" in run_dvc(project, "status").stdout
