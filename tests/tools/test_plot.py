"""`fastretro plot`: the learning curve of a run folder, and its errors."""

import re

import pytest

pytest.importorskip("matplotlib")

from fastretro.errors import InvalidArgumentError  # noqa: E402
from fastretro.tools.plot import learning_curve, read_monitor  # noqa: E402


def _monitor(path, rows, header="r,l,t,frames"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#{"t_start": 0}\n' + header + "\n" + "".join(rows))


def test_curve_reads_frames_and_names_the_baseline(tmp_path, monkeypatch):
    _monitor(
        tmp_path / "monitor.csv", [f"{-21 + i},100,{i}.0,{400 * (i + 1)}\n" for i in range(30)]
    )
    m = read_monitor(str(tmp_path / "monitor.csv"))
    assert m["frames"][-1] == 12000 and m["r"][0] == -21
    import matplotlib.axes

    drawn = {}
    real = matplotlib.axes.Axes.axhline

    def spy(self, y=0, *args, **kwargs):
        drawn[kwargs.get("label")] = y
        return real(self, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", spy)
    out = learning_curve(str(tmp_path), baseline=-20.32, baseline_label="random", window=10)
    assert out.endswith("curve.png") and (tmp_path / "curve.png").stat().st_size > 1000
    assert drawn == {"random -20.32": -20.32}


@pytest.mark.parametrize(
    "setup, kwargs, message",
    [
        (lambda d: None, {}, "No monitor.csv under"),
        (
            lambda d: _monitor(d / "monitor.csv", ["1,2,3\n"]),
            {"window": 0},
            "Expected window >= 1, got 0",
        ),
        (lambda d: _monitor(d / "monitor.csv", []), {}, "hold no episodes"),
        (
            lambda d: _monitor(d / "monitor.csv", ["1,2\n"], header="a,b"),
            {},
            "is not a monitor.csv (expected columns r, l, t)",
        ),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, setup, kwargs, message):
    setup(tmp_path)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        learning_curve(str(tmp_path), **kwargs)
