"""The built-in demo: a small fleet of loopback SMTP servers with freshly made certificates."""
