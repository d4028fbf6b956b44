"""Harnesses that run the whole pipeline on simulated data to evaluate or train it.

They drive the simulator (:mod:`zsds.sim`) and the executive (:mod:`zsds.executive`), so they
live at the edge, apart from the stages they evaluate: no science package imports them
(``tests/test_architecture.py``).
"""
