"""kdinterp.core.runtime: pinned environment variables, torch settings, the environment record."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from kdinterp.core import runtime
from kdinterp.core.params import ModelParams
from kdinterp.training.models import build_model

WRITTEN = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KDINTERP_THREADS", *runtime.PINNED_DEFAULTS, *runtime.PORTABLE_ISA)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):
    """No pinned variable set; the whole environment is restored afterwards. (monkeypatch alone would leave the
    variables that pin_environment adds: it undoes only what it changed itself, and a later test of the same worker
    that starts stages, through tool_env, would train with ATEN_CPU_CAPABILITY=avx2.)"""
    saved = dict(os.environ)
    for key in WRITTEN:
        monkeypatch.delenv(key, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def torch_state():
    """Restore torch's global settings changed by configure_torch."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    torch.set_num_threads(saved[0])
    torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]


def test_pin_environment_sets_defaults(clean_env):
    runtime.pin_environment()
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == str(runtime.DEFAULT_THREADS)
    assert os.environ["KDINTERP_THREADS"] == str(runtime.DEFAULT_THREADS)
    assert os.environ["MKL_DYNAMIC"] == "FALSE"
    assert os.environ["MKL_CBWR"] == "AUTO"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and "ATEN_CPU_CAPABILITY" not in os.environ  # opt-in only


def test_pin_environment_portable_isa(clean_env):
    clean_env.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    runtime.pin_environment(portable=True)
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"   # the user's value wins
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2"
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"


def test_pin_environment_respects_user_values(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "3")
    clean_env.setenv("MKL_CBWR", "COMPATIBLE")
    clean_env.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    runtime.pin_environment()
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["MKL_NUM_THREADS"] == "3"          # follows the user's thread count
    assert os.environ["KDINTERP_THREADS"] == "3"
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["MKL_DYNAMIC"] == "FALSE"          # unset by the user: pinned


def test_pin_environment_explicit_threads(clean_env):
    runtime.pin_environment(threads=1)
    assert os.environ["OMP_NUM_THREADS"] == os.environ["KDINTERP_THREADS"] == "1"
    clean_env.setenv("OMP_NUM_THREADS", "4")            # a user value is kept; the argument still rules torch
    runtime.pin_environment(threads=1)
    assert os.environ["OMP_NUM_THREADS"] == "4" and os.environ["KDINTERP_THREADS"] == "1"
    with pytest.raises(ValueError, match="threads"):
        runtime.pin_environment(threads=0)


def test_environment_record_is_json_and_stable():
    first, second = runtime.environment_record(), runtime.environment_record()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    for key in ("torch", "torch_cuda", "mkl", "onednn", "aten_cpu_capability", "cpu", "threads", "env",
                "cuda_device", "deterministic_algorithms"):
        assert key in first
    assert first["torch"] == torch.__version__
    assert first["threads"] == torch.get_num_threads()
    assert set(first["env"]) == set(runtime.ENV_KEYS)
    if torch.backends.mkldnn.is_available():
        assert first["onednn"]["version"] and first["onednn"]["version"][0].isdigit()
    if torch.backends.mkl.is_available():
        assert first["mkl"]["version"]
    text = json.dumps(first)
    assert "hostname" not in text and "time" not in first


def _train_tiny(steps: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    images, labels = torch.randn(steps, 16, 3, 16, 16, generator=gen), torch.randint(3, (steps, 16), generator=gen)
    torch.manual_seed(0)
    model = build_model(ModelParams("resnet10", width=8, small_input=True), num_classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for x, y in zip(images, labels, strict=True):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_configured_training_is_deterministic(torch_state):
    runtime.configure_torch(threads=2)
    assert torch.get_num_threads() == 2
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    first, second = _train_tiny(), _train_tiny()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_deterministic_mode_allows_bilinear_upsampling_on_cpu(torch_state):
    runtime.configure_torch(threads=1)
    maps = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    up = F.interpolate(maps, size=(16, 16), mode="bilinear", align_corners=False)
    up.sum().backward()  # raises under deterministic mode if no deterministic CPU kernel exists
    assert up.shape == (2, 4, 16, 16) and maps.grad is not None
