"""Servo identification with a phone (`pidog sysid`, docs/sysid.md): the marker sheet and steps
(`protocol`), marker tracking synchronized to the robot's log (`track`), the single-leg model (`leg`), the
CMA-ES fit (`fit`, `plot`) and synthetic recordings with known parameters (`synthetic`, for
bench/sysid_roundtrip.py and the tests). The robot's side is deploy/sysid.py."""
