"""Compliance reports: read from the store (``query`` over
:mod:`monitor.store.reads.reports`, ``daily``), assembled by pure functions (``assemble``,
``model``, ``timeline``, ``errors``; ``build`` runs both), rendered as HTML, CSV or JSON
(``render``), scheduled, mailed (through any channel that is a ``Mailer``) and archived by the
daemon (``archive``).

May import: ``monitor.store``, ``notifications`` (its contract), ``monitor.config`` and
everything below them.
"""
