#!/bin/sh
# Run by the nginx image's entrypoint before nginx starts (mounted in /docker-entrypoint.d/ by
# docker-compose.yml): writes the app's CORS_ALLOWED_ORIGINS (comma-separated, as the app reads
# them) as the map docker/nginx.conf includes, one `"origin" "origin";` line each, so that the
# errors nginx answers itself carry CORS for exactly those origins. An origin with characters
# no origin has (quotes, spaces, ...) is left out, and said so.
set -euf
out="${CHATBOT_CORS_MAP:-/etc/nginx/chatbot-cors-origins.map}"
: > "$out.tmp"
for origin in $(printf '%s' "${CORS_ALLOWED_ORIGINS:-}" | tr ',' ' '); do
    case "$origin" in
        *[!A-Za-z0-9.:/_-]*)
            echo "$0: not an origin, left out: $origin" >&2
            continue
            ;;
    esac
    printf '"%s" "%s";\n' "$origin" "$origin" >> "$out.tmp"
done
mv "$out.tmp" "$out"
echo "$0: $(wc -l < "$out") CORS origin(s) for nginx's own errors in $out"
