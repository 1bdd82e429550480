"""ACME renewal: issue, judge before deploying, deploy, and verify the new certificate is served."""
