#!/usr/bin/env bash
# The status page (GET / of the metrics endpoint) in headless Chromium,
# against a running `tierlog serve` whose TOPIC has committed offsets of
# GROUP: produces 7 more records to TOPIC so the group lags by 7, loads the
# page, checks the rendered DOM shows the topic's partitions and the
# group's lag, and writes screenshots (desktop and phone widths) under
# target/. Run by scripts/test.sh after the kafka-python group script.
#
# Usage: scripts/status_page_check.sh BIN KAFKA_ADDR METRICS_ADDR TOPIC GROUP
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 kafka=$2 metrics=$3 topic=$4 group=$5
url="http://$metrics/"
mkdir -p target

before=$(curl -fsS "http://$metrics/metrics" | awk -v t="tierlog_log_end_offset{topic=\"$topic\"" 'index($0, t) == 1 { s += $2 } END { print s + 0 }')
printf 'lag-%s\n' 1 2 3 4 5 6 7 | RUST_LOG=warn "$bin" produce --bootstrap "$kafka" "$topic" > /dev/null 2> target/status-page-produce.log
after=$(curl -fsS "http://$metrics/metrics" | awk -v t="tierlog_log_end_offset{topic=\"$topic\"" 'index($0, t) == 1 { s += $2 } END { print s + 0 }')
[ "$((after - before))" -eq 7 ] || { echo "status_page_check: produced 7, log end offsets moved by $((after - before))"; exit 1; }

chrome=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$(mktemp -d)")
dom=target/status-page.html
# --dump-dom prints the DOM after the page loaded (as a browser built it).
"${chrome[@]}" --dump-dom "$url" > "$dom" 2> target/chromium.log
fail() { echo "status_page_check: $1 (DOM in $dom, Chromium's log in target/chromium.log)"; exit 1; }
grep -q '<title>tierlog status</title>' "$dom" || fail "no status page"
grep -q 'id="ready" class="ok"' "$dom" || fail "the page does not say ready"
partitions=$(grep -c "<tr><td>$topic</td><td class=\"num\">" "$dom" || true)
[ "$partitions" -ge 2 ] || fail "expected the rows of $topic's partitions (and its group's), found $partitions"
grep -q "<th colspan=\"3\">$group</th><th class=\"num\">7</th>" "$dom" || fail "$group does not show a lag of 7"

for shot in "1280,900 target/status-page.png" "390,844 target/status-page-phone.png"; do
    set -- $shot
    rm -f "$2"
    "${chrome[@]}" --window-size="$1" --screenshot="$2" "$url" >> target/chromium.log 2>&1
    [ -s "$2" ] || fail "no screenshot $2"
done
echo "status_page_check: ok ($topic's partitions, $group lagging 7; screenshots target/status-page.png, target/status-page-phone.png)"
