"""Compliance reports: gathered from the store (:mod:`.data`), rendered as HTML, CSV or JSON
(:mod:`.render`), scheduled, mailed and archived by the daemon (:mod:`.archive`)."""
