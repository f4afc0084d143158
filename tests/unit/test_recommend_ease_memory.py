"""EASE is refused in one line when its dense inverse cannot fit the memory available.

Only catalogues past 30,000 items were refused, yet 3 x 8 x N^2 bytes is 21.6 GB at that cap: a
20,000-item catalogue (9.6 GB) on a smaller machine was attempted and OOM-killed mid-build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tunelab.apps.recommend import cf as cf_module
from tunelab.apps.recommend.cf import fit_cf
from tunelab.apps.recommend.config import CFSection
from tunelab.errors import ConfigError


def positives(users: int = 40, items: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    u = np.repeat([f"u{k}" for k in range(users)], 6)
    i = np.concatenate([rng.choice(items, size=6, replace=False) for _ in range(users)])
    i[:items] = np.arange(items)  # every item has a positive
    return u, i


def test_ease_larger_than_the_available_memory_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users, items = positives()
    monkeypatch.setattr(cf_module, "_available_memory", lambda: 10_000, raising=False)
    with pytest.raises(ConfigError) as caught:
        fit_cf(users, items, 30, CFSection(algorithm="ease"), key="cf.second")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cf.second.algorithm ease: 30 items with a positive need about 0.0 GB")
    assert "but 0.0 GB of memory is available; use cf.second.algorithm: als or bpr, or fewer items" in message


def test_ease_fits_where_the_memory_suffices_or_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    users, items = positives()
    for available in (cf_module.ease_bytes(30), None):
        monkeypatch.setattr(cf_module, "_available_memory", lambda a=available: a)
        assert fit_cf(users, items, 30, CFSection(algorithm="ease", factors=4)).algorithm == "ease"


def test_available_memory_is_read_here() -> None:
    found = cf_module._available_memory()
    assert found is None or found > 0


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "1000\n", "memory.current": "600\n", "memory.stat": "inactive_file 100\n"}, 500),
        ({"memory.max": "max\n", "memory.current": "600\n", "memory.stat": ""}, None),
        (
            {
                "memory/memory.limit_in_bytes": "2000\n",
                "memory/memory.usage_in_bytes": "1500\n",
                "memory/memory.stat": "cache 9\ntotal_inactive_file 300\n",
            },
            800,
        ),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1: no limit
        ({}, None),  # no cgroup files
    ],
)
def test_a_container_limit_lowers_the_available_memory(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cf_module._cgroup_headroom(tmp_path) == expected
