"""Device choice, mixed precision, CPU threads and out-of-memory back-off."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from scanner.device import (  # noqa: E402
    autocast_dtype,
    available_cores,
    resolve_torch_device,
    run_with_oom_backoff,
    set_cpu_threads,
)
from scanner.errors import ConfigError  # noqa: E402

no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, available: bool, count: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if available else 0)


@pytest.mark.parametrize(("available", "expected"), [(False, "cpu"), (True, "cuda")])
def test_auto(monkeypatch: pytest.MonkeyPatch, available: bool, expected: str) -> None:
    _fake_cuda(monkeypatch, available)
    assert resolve_torch_device("auto").type == expected
    assert resolve_torch_device().type == expected


def test_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, False)
    assert resolve_torch_device("cpu") == torch.device("cpu")
    assert resolve_torch_device(" CPU ") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_torch_device("cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_torch_device("cuda:0")
    _fake_cuda(monkeypatch, True, count=2)
    assert resolve_torch_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="cuda:2.*2 CUDA GPU"):
        resolve_torch_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu0", "meta", "cuda:x"])
def test_unknown(spec: str) -> None:
    with pytest.raises(ConfigError, match=spec.split(":")[0]):
        resolve_torch_device(spec)


def test_autocast_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(torch.device("cuda:0")) is torch.float16


def test_set_cpu_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_cpu_threads(None, decode_workers=10_000) == 1
        assert set_cpu_threads(None) == available_cores() == torch.get_num_threads()
        if available_cores() > 1:
            assert set_cpu_threads(None, decode_workers=1) == available_cores() - 1
        with pytest.raises(ConfigError, match="at least 1"):
            set_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_oom_backoff_halves_and_keeps_order() -> None:
    sizes: list[int] = []

    def fn(batch):  # noqa: ANN001, ANN202
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return [x * 10 for x in batch]

    assert run_with_oom_backoff(fn, list(range(7)), 8) == [x * 10 for x in range(7)]
    # 7 fails, 4 fails, then pairs (the smaller size is kept) and the last single item.
    assert sizes == [7, 4, 2, 2, 2, 1]


def test_oom_backoff_gives_up_at_one() -> None:
    calls: list[int] = []

    def fn(batch):  # noqa: ANN001, ANN202
        calls.append(len(batch))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_with_oom_backoff(fn, [1, 2, 3], 4)
    assert calls == [3, 2, 1]


def test_oom_backoff_other_errors_and_checks() -> None:
    def boom(batch):  # noqa: ANN001, ANN202
        raise RuntimeError("not memory")

    with pytest.raises(RuntimeError, match="not memory"):
        run_with_oom_backoff(boom, [1, 2], 2)
    with pytest.raises(ValueError, match="2 results for a batch of 1"):
        run_with_oom_backoff(lambda b: [0, 0], [1], 1)
    with pytest.raises(ValueError, match="at least 1"):
        run_with_oom_backoff(lambda b: b, [1], 0)
    assert run_with_oom_backoff(lambda b: b, [], 4) == []


@pytest.mark.requires_cuda
@no_cuda
def test_real_cuda() -> None:
    device = resolve_torch_device("auto")
    assert device.type == "cuda"
    assert autocast_dtype(device) in (torch.bfloat16, torch.float16)
