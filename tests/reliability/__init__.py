"""Reliability and security tests (docs/reliability.md, docs/security.md)."""

from __future__ import annotations
