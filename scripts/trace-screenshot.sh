#!/usr/bin/env bash
# Renders a Chrome trace written by --trace in a real trace viewer and saves a screenshot, with no network beyond
# the package registries: speedscope (npm; it opens the Trace Event Format) served from out/speedscope, shown by
# Debian's chromium in headless mode. Usage: scripts/trace-screenshot.sh TRACE.json OUT.png [WIDTHxHEIGHT]
# Needs: npm, python3, chromium (apt-get install chromium). Not part of CI: a documentation tool.
set -euo pipefail
trace=${1:?usage: scripts/trace-screenshot.sh TRACE.json OUT.png [WIDTHxHEIGHT]}
png=${2:?usage: scripts/trace-screenshot.sh TRACE.json OUT.png [WIDTHxHEIGHT]}
size=${3:-1600x700}
cd "$(dirname "$0")/.."
for tool in npm python3 chromium; do
  command -v "$tool" >/dev/null || { echo "trace-screenshot: $tool is missing (chromium: apt-get install chromium)" >&2; exit 1; }
done
viewer=out/speedscope
if [ ! -f "$viewer/index.html" ]; then
  mkdir -p "$viewer"
  (cd "$viewer" && npm pack --silent speedscope@1.25.0 >/dev/null && tar xzf speedscope-1.25.0.tgz --strip-components=3 package/dist/release)
fi
cp "$trace" "$viewer/trace.json"
port=$((20000 + RANDOM % 20000))
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$viewer" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/index.html" >/dev/null && break; sleep 0.1; done
timeout 120 chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size="${size/x/,}" \
  --virtual-time-budget=15000 --screenshot="$(realpath -m "$png")" \
  "http://127.0.0.1:$port/index.html#profileURL=http://127.0.0.1:$port/trace.json" >/dev/null 2>&1
echo "trace-screenshot: $png"
