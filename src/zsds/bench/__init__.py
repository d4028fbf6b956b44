"""Benchmarks of zsds that ship with the package (``zsds bench ...``).

:mod:`zsds.bench.products` reads back what a calibrated quadrant wrote (the step timings of
its log, its catalogues); :mod:`zsds.bench.homes` builds the simulated homes the benchmarks run
on; :mod:`zsds.bench.realtime` times the whole real-time chain of one quadrant per process,
:mod:`zsds.bench.peers` the peer packages on the same images, and :mod:`zsds.bench.report`
prints and writes the figures. The scripts under ``bench/`` reuse these pieces.
"""
