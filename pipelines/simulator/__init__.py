"""Synthetic ranking logs with known ground truth (``ranking-simulate``).

See :mod:`pipelines.simulator.simulate` for the output layout and the generative process, and
:mod:`pipelines.simulator.world` for the true model's coefficients. From Python::

    from pipelines.simulator import SimConfig, run_simulation
    summary = run_simulation(SimConfig(out="/tmp/sim", impressions=100_000, seed=1))

(The function is not re-exported as ``simulate``: that name is the submodule.)
"""
from pipelines.simulator.simulate import EXTRA_COLUMNS, LOG_COLUMNS, TRUTH_COLUMNS, SimConfig
from pipelines.simulator.simulate import read_related
from pipelines.simulator.simulate import simulate as run_simulation

__all__ = ["EXTRA_COLUMNS", "LOG_COLUMNS", "TRUTH_COLUMNS", "SimConfig", "read_related",
           "run_simulation"]
