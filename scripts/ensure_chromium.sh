#!/usr/bin/env bash
# Debian's Chromium for the Playwright browser tests (never `playwright install`).
set -u
if [ -x /usr/bin/chromium ]; then echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"; exit 0; fi
if [ "$(id -u)" = "0" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && echo "chromium installed"
else
  echo "chromium missing and not root: browser tests will skip (outside CI)"
fi
exit 0
