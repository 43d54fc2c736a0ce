"""The software authenticator the simulator's people carry (`rempart.simulate.softkey`)."""

from rempart.simulate.softkey import ORIGIN, RP_ID, SoftKey, b64url

__all__ = ["ORIGIN", "RP_ID", "SoftKey", "b64url"]
