"""The attack simulator (issue #7): a seeded hospital, real HTTP, simulated days, a scorecard.

`runner.simulate()` is the entry point (`rempart simulate` on the command line).
"""
