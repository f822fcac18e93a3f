"""Cost reports: synaptic operations, energy and latency of a compiled, simulated program.

:mod:`nmc_deploy.report.energy` turns simulated activity and a compiled program's summary into
a JSON-able report dict (every figure labelled measured or estimated, every coefficient cited);
:mod:`nmc_deploy.report.render` formats that dict as a text table, JSON or self-contained HTML.
"""
