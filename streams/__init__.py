"""logfog: anonymize web access logs into non-identifying events."""

__version__ = "0.1.0"
