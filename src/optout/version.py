"""The tool's version, written into manifests, evidence packs and audit entries."""

__version__ = "0.1.0"
