"""Shipped examples: the annotated configuration, the systemd unit and deploy hooks.  They are
package data so that a wheel install can write them out (``relaycert init``); ``config/`` in the
source tree links here.

May import: nothing of relaycert.
"""

from pathlib import Path

EXAMPLES = Path(__file__).parent
