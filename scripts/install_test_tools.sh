#!/usr/bin/env bash
# Test-only system tools: Debian's chromium renders the HTML report in a screenshot test.
# Installed when missing and this user may (root); otherwise that one test skips and says why.
set -eo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
  echo "glopro test tools: installing Debian's chromium for the report screenshot test"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/tmp/glopro-apt.log 2>&1 \
    || echo "glopro test tools: could not install chromium (see /tmp/glopro-apt.log); the screenshot test will skip"
else
  echo "glopro test tools: no chromium and not root: the report screenshot test will skip (apt-get install chromium)"
fi
