"""Loopback simulators of vendor EHR APIs, each enforcing the vendor's documented constraints."""
