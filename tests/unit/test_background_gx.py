"""Background GX's pacing: how long it leaves the driver to the stream, and that neither a
flush (a backlog, or closing) nor the stream's end waits out a pause."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from jobs.ingest.gx import BackgroundValidation, pause_s


@pytest.mark.parametrize(
    ("busy_s", "fraction", "pause"), [(1.0, 0.25, 3.0), (2.0, 0.5, 2.0), (1.0, 1.0, 0.0)]
)
def test_a_pause_keeps_gx_to_its_share_of_the_time(busy_s, fraction, pause) -> None:
    assert pause_s(busy_s, fraction) == pytest.approx(pause)
    assert busy_s / (busy_s + pause_s(busy_s, fraction)) == pytest.approx(fraction)


@pytest.mark.parametrize("cut", ["flush", "hurry"])
def test_a_flush_or_the_streams_end_cuts_a_pause_short(cfg, cut) -> None:
    slow = dataclasses.replace(cfg, quality=dataclasses.replace(cfg.quality, gx_busy_fraction=1e-6))
    background = BackgroundValidation(None, slow, None)  # type: ignore[arg-type]
    pausing = threading.Thread(target=background._pause, args=(10.0,), daemon=True)  # ~4 months
    pausing.start()
    pausing.join(0.2)
    assert pausing.is_alive()  # it does pause
    getattr(background, cut)()
    pausing.join(30)
    assert not pausing.is_alive()
