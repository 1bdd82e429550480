"""The built-in demo: a small fleet of loopback SMTP servers with freshly made certificates.

May import: everything below it (it runs the pipeline, a store and a renewal on loopback).
"""
