"""Compliance rules: pure functions from an observation and a policy to findings.

The contract lives in :mod:`checks.base`; the built-in rules are listed in :mod:`checks.registry`.
"""
