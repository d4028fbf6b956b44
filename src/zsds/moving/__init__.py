"""Pipeline 9: moving objects. Known-object tagging, intra-night tracklets, HelioLinC-style
linking across nights, orbit determination and MPC/ADES reports. See ``docs/moving.md``."""
