"""Infrastructure every other app may use: health checks, locks, logging, security headers.

It imports no other app, so it sits below all of them.
"""
