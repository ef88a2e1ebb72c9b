#!/usr/bin/env bash
# Renders a tpp report (report.html, self-contained) to a PNG with headless Chromium, to look at
# it as a user's browser shows it:
#   scripts/render_report.sh REPORT_DIR [OUT.png] [WIDTH]
# Needs Debian's chromium (scripts/setup.sh installs it).
set -euo pipefail
dir=${1:?usage: scripts/render_report.sh REPORT_DIR [OUT.png] [WIDTH]}
out=${2:-$dir/report.png}
width=${3:-1100}
html=$(cd "$dir" && pwd)/report.html
[ -f "$html" ] || { echo "render_report: no report.html in $dir" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "render_report: chromium not found (apt-get install chromium, or scripts/setup.sh)" >&2; exit 2; }
# The page's height: tall enough for every figure (Chromium cuts the screenshot at the window).
height=${TPP_RENDER_HEIGHT:-6000}
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files \
  --window-size="$width,$height" --screenshot="$(realpath -m "$out")" "file://$html" >/dev/null 2>&1
echo "render_report: $out"
