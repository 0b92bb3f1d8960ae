"""Vendor EHR simulators: loopback HTTP servers that answer as each vendor documents its API.

Each module simulates one vendor (``oracle_health``, ``epic``, ``athena``) and enforces the constraints its public
documentation states, each check citing the page it comes from, so a plugin is tested against what
a real tenant would accept rather than against the plugin's own idea of it.
"""
