#!/usr/bin/env bash
# Install Debian's Chromium for the real-browser test (JupyterLab driven by Playwright) when it is
# missing and we can (root + apt-get). Playwright's own browser download cannot work offline, so the
# tests use /usr/bin/chromium. Without it the browser test is skipped with a message saying why.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing Debian chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[setup] could not install chromium; the browser test will be skipped" >&2
else
  echo "[setup] no /usr/bin/chromium and no root apt-get: the browser test will be skipped" >&2
fi
exit 0
