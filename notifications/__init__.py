"""Notification channels: e-mail, Microsoft Teams, Slack, PagerDuty, webhook, and file or
console (``capture``).  ``base`` is the contract (``Notification``, ``Notifier``, ``Mailer``);
``settings`` every channel's settings model (all the configuration imports of this package);
``registry`` the literal mapping from settings to channel, the only way in to a channel module;
``render`` and ``http`` what channels share.

May import: ``monitor.config.common``, ``monitor.config.units``, ``monitor.secrets``,
``monitor.errors``, ``checks``.
"""
