#!/usr/bin/env bash
# nfs-ha agent installer, served by the control plane at /install.sh:
#
#   curl -fsSL https://<control-plane>/install.sh | sudo bash -s -- --token <enrolment-token>
#
# Checks the OS and the node tools, downloads the agent bundle from the control plane and
# verifies its checksum, exchanges the one-time enrolment token for this node's credential,
# writes /etc/nfs-ha/agent.json (0600), installs the systemd unit, runs the agent's own
# preflight (devices, reservation support, LVM system ID, VG autoactivation off, watchdog,
# nfs-server not enabled at boot) and starts the agent. Safe to run again (it keeps the credential it has); --uninstall.
set -euo pipefail

CONTROL_PLANE='@@CONTROL_PLANE_URL@@'
BUNDLE_SHA256='@@BUNDLE_SHA256@@'
# Tests install under another root and without systemd; never set in production.
ROOT=${NFSHA_INSTALL_ROOT:-}
CONFIG=$ROOT/etc/nfs-ha/agent.json
LIB=$ROOT/usr/local/lib/nfs-ha
UNIT=$ROOT/etc/systemd/system/nfs-ha-agent.service

say() { printf 'nfs-ha install: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
usage() {
  cat <<'EOF'
usage: install.sh --token <enrolment-token> [--url <control-plane>] [--no-start]
       install.sh [--no-start]        rerun: keep this node's credential, refresh the rest
       install.sh --uninstall         stop and remove the agent (the node's resources stay as they are)
EOF
}

token='' start=1 uninstall=0
while (($#)); do
  case $1 in
    --token) token=${2:?--token needs a value}; shift 2 ;;
    --url) CONTROL_PLANE=${2:?--url needs a value}; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

[[ $(id -u) == 0 || -n $ROOT ]] || die "run it as root (sudo bash -s -- ...)"

if ((uninstall)); then
  if ((start)) && command -v systemctl >/dev/null; then systemctl disable --now nfs-ha-agent 2>/dev/null || true; fi
  rm -f "$UNIT" "$LIB/nfs-ha-agent.mjs" "$CONFIG"
  rmdir "$LIB" "$(dirname "$CONFIG")" 2>/dev/null || true
  ((start)) && systemctl daemon-reload
  say "removed the agent, its unit and its credential (revoke the credential on the control plane too)"
  exit 0
fi

# --- the OS and the node tools ---------------------------------------------------------------
[[ -r /etc/os-release ]] || die "cannot read /etc/os-release; this installer supports Debian and Ubuntu"
# shellcheck source=/dev/null
. /etc/os-release
[[ ${ID:-} == debian || ${ID_LIKE:-} == *debian* ]] || die "this installer supports Debian and Ubuntu, not ${PRETTY_NAME:-this OS}"
missing=()
need() { command -v "$1" >/dev/null || missing+=("$2"); }
need sg_persist sg3-utils
need lvm lvm2
need exportfs nfs-kernel-server
need ip iproute2
need arping arping
need curl curl
need node nodejs
if ((${#missing[@]})); then
  die "missing ${missing[*]}; install them with: apt-get install ${missing[*]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || die "Node.js $(node --version) is too old: the agent needs 20 or later"
[[ $token == '' || $token =~ ^nfsha_en_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$ ]] || die "that is not an enrolment token (nfsha_en_…); ask for one with: nfs-ha enrol <cluster> <node>"

# --- the agent bundle, verified --------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "downloading the agent from $CONTROL_PLANE"
curl -fsSL --retry 3 "$CONTROL_PLANE/install/nfs-ha-agent.mjs" -o "$tmp/nfs-ha-agent.mjs" || die "cannot download the agent from $CONTROL_PLANE"
echo "$BUNDLE_SHA256  $tmp/nfs-ha-agent.mjs" | sha256sum --check --status || die "the downloaded agent does not match its checksum ($BUNDLE_SHA256); not installing it"

# --- this node's credential ------------------------------------------------------------------
mkdir -p "$(dirname "$CONFIG")" "$LIB" "$(dirname "$UNIT")"
chmod 0700 "$(dirname "$CONFIG")"
if [[ -n $token ]]; then
  say "exchanging the enrolment token"
  printf '{"token":"%s"}' "$token" >"$tmp/enrol.json"
  curl -fsS --retry 3 -H 'content-type: application/json' --data @"$tmp/enrol.json" "$CONTROL_PLANE/v1/enrol" -o "$tmp/enrolled.json" ||
    die "the control plane refused the enrolment token (already used, expired or revoked?); ask for a new one"
  (
    umask 077
    # shellcheck disable=SC2016 # JavaScript, not shell: its ${...} are template literals
    CONTROL_PLANE=$CONTROL_PLANE node -e '
      const fs = require("fs");
      const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
      if (!r.peerToken) throw new Error("the control plane gave no peer token");
      const config = { controlPlane: { url: process.env.CONTROL_PLANE, token: r.credential }, clusterId: r.clusterId, nodeId: r.node, peer: { token: r.peerToken } };
      fs.writeFileSync(process.argv[2], JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
      console.error(`nfs-ha install: enrolled as ${r.node} of cluster ${r.clusterId}`);
    ' "$tmp/enrolled.json" "$CONFIG.new"
  )
  mv "$CONFIG.new" "$CONFIG"
elif [[ -f $CONFIG ]]; then
  say "keeping this node's credential in $CONFIG"
else
  die "this node is not enrolled yet: pass --token <enrolment-token>"
fi
chmod 0600 "$CONFIG"

# --- the agent and its unit ------------------------------------------------------------------
install -m 0644 "$tmp/nfs-ha-agent.mjs" "$LIB/nfs-ha-agent.mjs"
cat >"$UNIT" <<'NFSHA_UNIT'
@@AGENT_UNIT@@
NFSHA_UNIT

# --- preflight: the agent checks this node against the cluster's spec ------------------------
if [[ -z $ROOT && ! -e /dev/watchdog ]]; then
  say "no /dev/watchdog: loading softdog with a 1 s timeout (the default timing allows at most 1.92 s)"
  echo softdog >/etc/modules-load.d/nfs-ha-softdog.conf
  echo 'options softdog soft_margin=1' >/etc/modprobe.d/nfs-ha-softdog.conf
  modprobe softdog soft_margin=1
fi
say "preflight"
node "$LIB/nfs-ha-agent.mjs" validate --config "$CONFIG" || die "preflight failed: fix the problems above, then run the installer again (the credential is kept)"

if ((start)); then
  systemctl daemon-reload
  systemctl enable nfs-ha-agent >/dev/null 2>&1
  systemctl restart nfs-ha-agent
  say "nfs-ha-agent is running: journalctl -u nfs-ha-agent -f"
else
  say "installed; not started (--no-start)"
fi
