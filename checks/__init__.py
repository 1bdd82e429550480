"""Compliance rules: pure functions from an observation and a policy to findings.

The contract lives in :mod:`checks.base`; the built-in rules are listed in :mod:`checks.registry`.

May import: nothing of relaycert (the rules are pure: an observation and a policy in, findings
out).
"""

import warnings

# Certificates come from servers we do not control. cryptography warns (UserWarning,
# CryptographyDeprecationWarning) about RFC 5280 violations such as an over-long subject CN or a
# negative serial number while reading them; those are findings to judge, not program warnings,
# and must not spill into logs or stderr.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
