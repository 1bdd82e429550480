"""Notification channels (e-mail, Microsoft Teams, webhook).  Not built yet: see issue 3."""
