"""The simulator's façade (the design card's ``sim.py``): the model's public interface.

``Hospital(config).simulate_day(state, day) -> DayRecords`` is the whole of it; the model
itself lives in :mod:`hospital_stream.model`.
"""

from hospital_stream.model import *  # noqa: F403
