#!/bin/sh
# Start Alertmanager with the channel secrets put in at start (Alertmanager 0.25 cannot read a
# Telegram bot token from a file). Usage: entrypoint.sh ALERTMANAGER_BINARY [ARGS...]; --config.file
# is added.
#   AM_CONFIG_SOURCE   the bundled alertmanager.yml (default /etc/alertmanager/alertmanager.yml)
#   AM_CONFIG_DIR      where the filled-in copy is written, private (default /tmp/alertmanager)
#   ALERT_SLACK_WEBHOOK (written to a private file) or ALERT_SLACK_WEBHOOK_FILE; without either,
#                      the config's /run/secrets/alert_slack_webhook is used as is.
#   ALERT_TELEGRAM_BOT or ALERT_TELEGRAM_BOT_FILE, ALERT_TELEGRAM_CHAT: without both, no Telegram.
#   ALERT_TELEGRAM_API_URL: Telegram's base URL (tests point it at loopback).
# No secret is ever printed.
set -eu

source_file=${AM_CONFIG_SOURCE:-/etc/alertmanager/alertmanager.yml}
source_dir=$(cd "$(dirname "$source_file")" && pwd)
out_dir=${AM_CONFIG_DIR:-/tmp/alertmanager}
out_file="$out_dir/alertmanager.yml"

token=${ALERT_TELEGRAM_BOT:-}
if [ -z "$token" ] && [ -n "${ALERT_TELEGRAM_BOT_FILE:-}" ]; then
    token=$(cat "$ALERT_TELEGRAM_BOT_FILE")
fi
chat=${ALERT_TELEGRAM_CHAT:-}
api_url=${ALERT_TELEGRAM_API_URL:-https://api.telegram.org}

case "$chat" in
    ''|*[!0-9-]*) if [ -n "$chat" ]; then echo "entrypoint: ALERT_TELEGRAM_CHAT must be a numeric chat id" >&2; exit 2; fi ;;
esac
case "$token" in
    *[!A-Za-z0-9:_-]*) echo "entrypoint: the Telegram bot token has unexpected characters" >&2; exit 2 ;;
esac

umask 077
mkdir -p "$out_dir"

slack_file=/run/secrets/alert_slack_webhook
if [ -n "${ALERT_SLACK_WEBHOOK:-}" ]; then
    slack_file="$out_dir/slack_webhook"
    printf '%s' "$ALERT_SLACK_WEBHOOK" > "$slack_file"
elif [ -n "${ALERT_SLACK_WEBHOOK_FILE:-}" ]; then
    slack_file=$ALERT_SLACK_WEBHOOK_FILE
fi
if [ -n "$token" ] && [ -n "$chat" ]; then
    sed -e "s|TELEGRAM_BOT_TOKEN_SET_AT_START|$token|" \
        -e "s|chat_id: -1  # TELEGRAM_CHAT_ID_SET_AT_START|chat_id: $chat|" \
        -e "s|api_url: https://api.telegram.org|api_url: $api_url|" \
        -e "s|  - templates/|  - $source_dir/templates/|" \
        -e "s|api_url_file: /run/secrets/alert_slack_webhook|api_url_file: $slack_file|" \
        "$source_file" > "$out_file"
    echo "entrypoint: Telegram notifications enabled" >&2
else
    sed -e '/# BEGIN telegram/,/# END telegram/d' \
        -e "s|  - templates/|  - $source_dir/templates/|" \
        -e "s|api_url_file: /run/secrets/alert_slack_webhook|api_url_file: $slack_file|" \
        "$source_file" > "$out_file"
    echo "entrypoint: Telegram not configured (ALERT_TELEGRAM_BOT[_FILE] and ALERT_TELEGRAM_CHAT); Slack only" >&2
fi

exec "$@" --config.file="$out_file"
