"""The researcher's experiment loop (README "The experiment loop") on the tiny study: `dvc exp run -S`,
`dvc exp show` with the documented `--drop`/`--keep`, `dvc metrics diff`.

The parameter changed is `verdicts.power`, which only stage `figures` reads: the loop costs one stage,
and the headline metrics must not move (they do not depend on a verdict's power).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_dvc as _dvc
from tests.tiny_study import copy_study

pytestmark = pytest.mark.slow

#: The README's `dvc exp show` columns: the experiment, the changed parameter, one headline metric of one model's seeds.
KEEP = r"Experiment|verdicts\.power|.*/kd-\d\.json:top1$"


def test_exp_run_show_and_metrics_diff(tiny_study: Path, tmp_path: Path) -> None:
    project = copy_study(tiny_study, tmp_path / "study")
    ran = _dvc(project, "exp", "run", "-n", "power09", "-S", "verdicts.power=0.9").stdout
    assert re.findall(r"Running stage '([^']+)'", ran) == ["figures"], ran

    shown = _dvc(project, "exp", "show", "--csv", "--drop", ".*", "--keep", KEEP).stdout
    rows = list(csv.DictReader(io.StringIO(shown)))
    columns = list(rows[0])
    assert columns == ["Experiment", "outputs/metrics/kd-0.json:top1", "outputs/metrics/kd-1.json:top1",
                       "verdicts.power"], columns
    power = [(row["Experiment"], row["verdicts.power"]) for row in rows]   # workspace, baseline, the experiment
    assert ("power09", "0.9") in power and ("", "0.8") in power, rows

    diff = json.loads(_dvc(project, "metrics", "diff", "HEAD", "power09", "--all", "--json").stdout)
    files = {Path(path).name for path in diff}
    assert {"teacher.json", "kd-0.json", "scratch-1.json"} <= files, diff
    assert all(entry.get("diff") in (0, None) for metrics in diff.values() for entry in metrics.values()), diff
    assert _dvc(project, "metrics", "diff", "HEAD", "power09").stdout.strip() == ""   # nothing moved: no rows
