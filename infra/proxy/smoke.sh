#!/usr/bin/env bash
# CI (.ci/run): the README's nginx configuration in front of the packaged control plane, with TLS:
# health, the installer written with the configured public URL (never the request's headers),
# and the client's address taken from the proxy, so a stranger's failures lock out only itself.
# Needs nginx and openssl (Debian packages); loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
cp_pid='' ng_pid=''
cleanup() {
  for pid in $ng_pid $cp_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=18443 cp_port=18080
# The control plane as its package installs it: unpacked, run by the unit's command on the
# package's own runtime, with none of this shell's environment.
deb=$(ls dist/nfs-ha-control-plane_*_amd64.deb 2>/dev/null || true)
[[ -n $deb ]] || { npm run --silent build >/dev/null && deb=$(ls dist/nfs-ha-control-plane_*_amd64.deb); }
dpkg-deb -x "$deb" "$work/pkg"
exec_start=$(sed -n 's/^ExecStart=//p' "$work/pkg/lib/systemd/system/nfs-ha-control-plane.service")
read -r -a command <<<"${exec_start//\/usr\/lib\//$work/pkg/usr/lib/}"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$port ssl;|" -e '/listen \[::\]:443/d' \
  -e "s|/etc/ssl/nfs-ha/|$work/|" -e "s|127.0.0.1:8080|127.0.0.1:$cp_port|" infra/proxy/nfs-ha.nginx.conf >"$work/site.conf"
cat >"$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  include $work/site.conf;
}
CONF
env -i NFSHA_DATA_DIR="$work/data" PORT=$cp_port HOST=127.0.0.1 NFSHA_PUBLIC_URL="https://127.0.0.1:$port" NFSHA_TRUSTED_PROXIES=127.0.0.1 LOG_LEVEL=warn \
  "${command[@]}" >"$work/cp.log" 2>&1 &
cp_pid=$!
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
ng_pid=$!
for _ in $(seq 100); do
  curl -fsk "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
fail() { echo "proxy smoke: FAIL: $*" >&2; cat "$work/cp.log" "$work/error.log" >&2 || true; exit 1; }
curl -fsk "https://127.0.0.1:$port/healthz" | grep -q '"ok":true' || fail "no health through nginx"
script=$(curl -fsk -H "X-Forwarded-Proto: https';touch /tmp/pwned;'" -H 'Host: evil.example' "https://127.0.0.1:$port/install.sh") || fail "no installer"
grep -qx "CONTROL_PLANE='https://127.0.0.1:$port'" <<<"$script" || fail "the installer does not carry the configured URL"
! grep -q 'pwned\|evil.example' <<<"$script" || fail "request headers reached the installer"
bad="Authorization: Bearer nfsha_op_0000000000000000_$(printf 'x%.0s' $(seq 43))"
codes=$(for _ in $(seq 21); do curl -sk -o /dev/null -w '%{http_code} ' -H "$bad" "https://127.0.0.1:$port/v1/clusters"; done)
[[ $codes == *429* ]] || fail "21 bad keys through the proxy were never refused: $codes"
key=$(cat "$work/data/initial-admin-key")
[[ $(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "https://127.0.0.1:$port/v1/clusters") == 200 ]] ||
  fail "a valid key from the locked-out address was refused"
echo "proxy smoke: nginx with TLS in front of the packaged control plane ($(basename "$deb")): health, installer URL, lockout of bad keys only — ok"
