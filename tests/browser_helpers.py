"""What the browser tests share: Debian's Chromium, its flags, where screenshots go, and the skip when it is missing.

The `browser` and `page` fixtures are in conftest.py (Playwright is imported there only when a test asks for them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ('ARGS', 'CHROMIUM', 'OUTPUT', 'require_chromium', 'shot')

CHROMIUM = Path('/usr/bin/chromium')
OUTPUT = Path(__file__).resolve().parent.parent / 'test-output'
ARGS = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]


def require_chromium() -> None:
    """Skip the calling module without Chromium; on CI, fail instead (CI installs it)."""
    if not CHROMIUM.exists():
        if os.environ.get('CI'):
            raise RuntimeError(f'{CHROMIUM} is missing on CI: install Debian chromium (apt-get install chromium).')
        pytest.skip(
            f'{CHROMIUM} is missing: apt-get install chromium to run the browser tests', allow_module_level=True
        )


def shot(page: Page, name: str) -> None:
    """A full-page screenshot into test-output/."""
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / name), full_page=True)
