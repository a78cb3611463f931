#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian's chromium + chromium-driver) for the browser
# test (tests/test_web_browser.py). Never fails: without root, apt-get or a network the browser
# test skips with its reason and the rest of CI runs.
cd "$(dirname "$0")/.." || exit 0
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "install_browser: $(chromium --version 2>/dev/null || echo chromium) and chromedriver already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get here; the browser test will skip" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser: not root and no password-less sudo; the browser test will skip" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
    echo "install_browser: installed $(chromium --version 2>/dev/null || echo chromium)"
else
    echo "install_browser: apt-get could not install chromium/chromium-driver; the browser test will skip" >&2
fi
exit 0
