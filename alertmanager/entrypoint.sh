#!/bin/sh
# Start Alertmanager with the configured channels filled into a private copy of alertmanager.yml
# (Alertmanager 0.25 reads neither a Telegram token nor a webhook URL from a file). Every
# combination of channels loads; the start-up lines say where crit and warn go, and say so when
# that is nowhere. Usage: entrypoint.sh ALERTMANAGER_BINARY [ARGS...]; --config.file is added.
#   AM_CONFIG_SOURCE   the bundled alertmanager.yml (default /etc/alertmanager/alertmanager.yml)
#   AM_CONFIG_DIR      where the filled-in copy is written, private (default /tmp/alertmanager)
#   ALERT_SLACK_WEBHOOK (written to a private file) or ALERT_SLACK_WEBHOOK_FILE; without either,
#                      the Docker secret /run/secrets/alert_slack_webhook when it exists; else no Slack.
#   ALERT_TELEGRAM_BOT or ALERT_TELEGRAM_BOT_FILE, with ALERT_TELEGRAM_CHAT: Telegram.
#   ALERT_TELEGRAM_API_URL: Telegram's base URL (tests point it at loopback).
#   ALERT_WEBHOOK_URL or ALERT_WEBHOOK_URL_FILE: a generic webhook (Alertmanager's JSON).
#   ALERT_HEARTBEAT_URL or ALERT_HEARTBEAT_URL_FILE: the dead man's switch (healthchecks.io ping
#                      URL, PagerDuty/Opsgenie heartbeat URL) the always-firing Watchdog pings.
#   ALERT_DASHBOARD_URL: Grafana's external URL (https://grafana.example.org); the rules' dashboard
#                      paths are shown under it. ALERT_RUNBOOK_URL: where docs/runbooks.md is served;
#                      the rules' runbook anchors are shown under it. Unset: no such links.
# Bad values: one line naming the variable, exit 2. No secret is ever printed.
set -eu

source_file=${AM_CONFIG_SOURCE:-/etc/alertmanager/alertmanager.yml}
source_dir=$(cd "$(dirname "$source_file")" && pwd)
out_dir=${AM_CONFIG_DIR:-/tmp/alertmanager}
out_file="$out_dir/alertmanager.yml"

fail() {
    echo "entrypoint: $*" >&2
    exit 2
}

# The value of NAME, or the content of the file NAME_FILE names; empty when neither is set.
secret() {
    eval "value=\${$1:-}"
    eval "path=\${$1_FILE:-}"
    if [ -z "$value" ] && [ -n "$path" ]; then
        [ -r "$path" ] || fail "$1_FILE: cannot read $path"
        value=$(cat "$path")
    fi
    printf '%s' "$value"
}

# A URL goes into the YAML between single quotes: refuse what could break out of them.
check_url() {
    case "$2" in
        '') ;;
        http://*|https://*) ;;
        *) fail "$1: expected an http:// or https:// URL" ;;
    esac
    case "$2" in
        *[[:space:]\'\"\\]*) fail "$1: the URL contains spaces, quotes or backslashes" ;;
    esac
}

token=$(secret ALERT_TELEGRAM_BOT)
chat=${ALERT_TELEGRAM_CHAT:-}
telegram_api=${ALERT_TELEGRAM_API_URL:-https://api.telegram.org}
webhook=$(secret ALERT_WEBHOOK_URL)
heartbeat=$(secret ALERT_HEARTBEAT_URL)

case "$chat" in
    ''|*[!0-9-]*) if [ -n "$chat" ]; then fail "ALERT_TELEGRAM_CHAT must be a numeric chat id"; fi ;;
esac
case "$token" in
    *[!A-Za-z0-9:_-]*) fail "the Telegram bot token has unexpected characters" ;;
esac
if [ -n "$token" ] && [ -z "$chat" ]; then fail "ALERT_TELEGRAM_BOT is set but ALERT_TELEGRAM_CHAT is not"; fi
if [ -z "$token" ] && [ -n "$chat" ]; then fail "ALERT_TELEGRAM_CHAT is set but ALERT_TELEGRAM_BOT[_FILE] is not"; fi
check_url ALERT_TELEGRAM_API_URL "$telegram_api"
check_url ALERT_WEBHOOK_URL "$webhook"
check_url ALERT_HEARTBEAT_URL "$heartbeat"
dashboard_base=${ALERT_DASHBOARD_URL:-}
dashboard_base=${dashboard_base%/}
runbook_base=${ALERT_RUNBOOK_URL:-}
check_url ALERT_DASHBOARD_URL "$dashboard_base"
check_url ALERT_RUNBOOK_URL "$runbook_base"

umask 077
mkdir -p "$out_dir/templates"

# The templates, with the link bases put into their marked lines (a Go string literal: the URL
# check above keeps quotes and backslashes out).
for template in "$source_dir"/templates/*.tmpl; do
    BT_DASHBOARD=$dashboard_base BT_RUNBOOK=$runbook_base awk '
    function put(line, value,   at) {
        at = index(line, "\"\"")
        return substr(line, 1, at) value substr(line, at + 1)
    }
    index($0, "DASHBOARD_BASE_SET_AT_START") { print put($0, ENVIRON["BT_DASHBOARD"]); next }
    index($0, "RUNBOOK_BASE_SET_AT_START") { print put($0, ENVIRON["BT_RUNBOOK"]); next }
    { print }
    ' "$template" > "$out_dir/templates/$(basename "$template")"
done

slack_file=
if [ -n "${ALERT_SLACK_WEBHOOK:-}" ]; then
    slack_file="$out_dir/slack_webhook"
    printf '%s' "$ALERT_SLACK_WEBHOOK" > "$slack_file"
elif [ -n "${ALERT_SLACK_WEBHOOK_FILE:-}" ]; then
    [ -r "$ALERT_SLACK_WEBHOOK_FILE" ] || fail "ALERT_SLACK_WEBHOOK_FILE: cannot read $ALERT_SLACK_WEBHOOK_FILE"
    slack_file=$ALERT_SLACK_WEBHOOK_FILE
elif [ -s /run/secrets/alert_slack_webhook ]; then
    slack_file=/run/secrets/alert_slack_webhook
fi
case "$slack_file" in
    *[[:space:]\'\"\\]*) fail "ALERT_SLACK_WEBHOOK_FILE: the path contains spaces, quotes or backslashes" ;;
esac

# Which marked blocks of the template stay, and where each severity then goes.
keep=
crit=
warn=
if [ -n "$slack_file" ]; then keep="$keep slack"; crit="$crit slack"; warn="$warn slack"; fi
if [ -n "$token" ]; then keep="$keep telegram"; crit="$crit telegram"; fi
if [ -n "$webhook" ]; then keep="$keep webhook"; crit="$crit webhook"; warn="$warn webhook"; fi
if [ -n "$token" ] && [ -z "$warn" ]; then keep="$keep telegram-warn"; warn=" telegram"; fi
if [ -n "$heartbeat" ]; then keep="$keep heartbeat"; fi

BT_KEEP=$keep BT_TEMPLATES="$out_dir/templates/" BT_SLACK_FILE=$slack_file BT_TOKEN=$token BT_CHAT=$chat \
BT_TELEGRAM_API=$telegram_api BT_WEBHOOK=$webhook BT_HEARTBEAT=$heartbeat awk '
function setting(line, key, value) {
    return substr(line, 1, index(line, key ":") + length(key)) " " value
}
BEGIN { split(ENVIRON["BT_KEEP"], names, " "); for (i in names) kept[names[i]] = 1 }
/^[ ]*# BEGIN [a-z]/ { split($0, parts, "# BEGIN "); split(parts[2], words, " "); skipping = !(words[1] in kept); next }
/^[ ]*# END [a-z]/ { skipping = 0; next }
skipping { next }
{
    line = $0
    if (index(line, "  - templates/")) line = "  - " ENVIRON["BT_TEMPLATES"] substr(line, index(line, "templates/") + 10)
    else if (index(line, "SLACK_WEBHOOK_FILE_SET_AT_START")) line = setting(line, "api_url_file", "\047" ENVIRON["BT_SLACK_FILE"] "\047")
    else if (index(line, "TELEGRAM_API_URL_SET_AT_START")) line = setting(line, "api_url", "\047" ENVIRON["BT_TELEGRAM_API"] "\047")
    else if (index(line, "TELEGRAM_BOT_TOKEN_SET_AT_START")) line = setting(line, "bot_token", "\047" ENVIRON["BT_TOKEN"] "\047")
    else if (index(line, "TELEGRAM_CHAT_ID_SET_AT_START")) line = setting(line, "chat_id", ENVIRON["BT_CHAT"])
    else if (index(line, "WEBHOOK_URL_SET_AT_START") && !index(line, "HEARTBEAT")) line = setting(line, "url", "\047" ENVIRON["BT_WEBHOOK"] "\047")
    else if (index(line, "HEARTBEAT_URL_SET_AT_START")) line = setting(line, "url", "\047" ENVIRON["BT_HEARTBEAT"] "\047")
    print line
}
' "$source_file" > "$out_file"

if [ -z "$crit" ]; then
    echo "entrypoint: WARNING: no notification channel configured (ALERT_SLACK_WEBHOOK[_FILE]," \
        "ALERT_TELEGRAM_BOT[_FILE] with ALERT_TELEGRAM_CHAT, ALERT_WEBHOOK_URL[_FILE]):" \
        "crit and warn alerts go nowhere, they only show in Alertmanager's UI" >&2
else
    echo "entrypoint: crit (and critical) ->$crit; warn (warning, no or unknown severity) ->$warn;" \
        "info and none -> dashboards only" >&2
fi
if [ -z "$dashboard_base" ] || [ -z "$runbook_base" ]; then
    echo "entrypoint: ALERT_DASHBOARD_URL / ALERT_RUNBOOK_URL not both set: messages leave out the" \
        "dashboard / runbook links they would build from them" >&2
fi
if [ -n "$heartbeat" ]; then
    echo "entrypoint: Watchdog -> the heartbeat URL (ALERT_HEARTBEAT_URL), every minute" >&2
else
    echo "entrypoint: WARNING: ALERT_HEARTBEAT_URL[_FILE] not set: the Watchdog goes nowhere and" \
        "nobody outside notices when Prometheus or Alertmanager dies" >&2
fi

exec "$@" --config.file="$out_file"
