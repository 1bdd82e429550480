"""ACME renewal: issue, judge before deploying, deploy, and verify the new certificate is served.

``context`` is what a renewal reads of the configuration; ``runner`` the attempt's steps;
``decide`` when; ``orders`` and ``acme_flow`` the CA; ``solvers/`` the challenges (a registry);
``deploy`` and ``dane_gate`` the gate before deploying; ``verify`` the re-probe; ``history`` and
``notify`` what an attempt records and tells; ``settings`` the ``[[renewals]]`` models, on a
floor below the configuration.

May import: ``monitor.pipeline`` and everything below it.
"""
