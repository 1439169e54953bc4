#!/usr/bin/env bash
# nfs-ha agent installer, served by the control plane at /install.sh:
#
#   nfs-ha enrol nfs-prod node-a        # on the operator's machine: a token, and the agent's SHA-256
#   install -m 0600 /dev/stdin /root/nfs-ha.token    # on the node: paste the token, then Ctrl-D
#   curl -fsSL --proto =https https://<control-plane>/install.sh | sudo bash -s -- \
#       --token-file /root/nfs-ha.token --sha256 <from nfs-ha enrol> \
#       --device /dev/disk/by-id/wwn-0x... --vg vg_nfs --mount-prefix /srv/nfs
#
# Checks the OS and the node tools; shows what this node will let the cluster touch (the
# devices, the VG, the mount prefix: decided here, never by the spec the control plane serves)
# and asks to confirm (--yes when there is no terminal); exchanges the one-time enrolment token
# for this node's credential; then uses the agent package when the node has it, or installs it
# (--package FILE, or on a Debian amd64 node the one this control plane serves: the agent with its
# own runtime, no Node needed), or else downloads the agent bundle for the node's Node (22 or
# later); a download is verified against the checksum the operator gave (--sha256, from
# nfs-ha enrol) or, failing that, the one the script was served with; has the agent write
# /etc/nfs-ha/agent.json (0600), runs the agent's own preflight and starts the agent. Run it again to refresh a node: it keeps the credential and the allowed set,
# and never moves the service — a running agent that serves is reloaded, not restarted.
set -euo pipefail

CONTROL_PLANE='@@CONTROL_PLANE_URL@@'
BUNDLE_SHA256='@@BUNDLE_SHA256@@'
# Empty when this control plane serves no agent package (on AWS: the bundle, or --package).
PACKAGE_SHA256='@@PACKAGE_SHA256@@'
# Tests install under another root and without systemd; never set in production.
ROOT=${NFSHA_INSTALL_ROOT:-}
CONFIG=$ROOT/etc/nfs-ha/agent.json
LIB=$ROOT/usr/local/lib/nfs-ha
# The agent package's executable; where it is, the installer runs it and needs no Node.
PACKAGED=$ROOT/usr/sbin/nfs-ha-agent
UNIT=$ROOT/etc/systemd/system/nfs-ha-agent.service

say() { printf 'nfs-ha install: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
usage() {
  cat <<'EOF'
usage: install.sh --token-file FILE|- --device PATH [--device PATH ...] --vg NAME --mount-prefix PATH
                  [--package FILE | --sha256 HEX] [--url URL] [--insecure] [--yes] [--no-start]
       install.sh [--device ... --vg ... --mount-prefix ...] [--no-start]
                                      rerun: keep this node's credential (and allowed set), refresh the rest
       install.sh --uninstall         stop and remove the agent (the node's resources stay as they are)

  --token-file FILE   the enrolment token (from nfs-ha enrol), in a file or on stdin (-); never on the command line
  --package FILE      install this nfs-ha-agent .deb (the agent with its own runtime) instead of downloading one
  --sha256 HEX        the checksum nfs-ha enrol printed for what this node downloads (the package on a
                      Debian amd64 node, else the bundle), checked instead of the served one
  --device PATH       a shared device this node lets the cluster use (repeat for each)
  --vg NAME           the volume group the cluster may activate here
  --mount-prefix PATH the shared filesystem must be mounted at or below it
  --insecure          allow a plain-HTTP control plane (a lab): credentials cross the network in clear
  --yes               confirm the allowed set without asking (no terminal)
EOF
}

token_file='' sha256='' package='' served=0 start=1 uninstall=0 insecure=0 yes=0 vg='' prefix=''
devices=()
while (($#)); do
  case $1 in
    --token) die "the enrolment token does not go on the command line (ps, shell history): use --token-file FILE, or --token-file - for stdin" ;;
    --token-file) token_file=${2:?--token-file needs a value}; shift 2 ;;
    --sha256) sha256=${2:?--sha256 needs a value}; shift 2 ;;
    --package) package=${2:?--package needs a value}; shift 2 ;;
    --url) CONTROL_PLANE=${2:?--url needs a value}; shift 2 ;;
    --device) devices+=("${2:?--device needs a value}"); shift 2 ;;
    --vg) vg=${2:?--vg needs a value}; shift 2 ;;
    --mount-prefix) prefix=${2:?--mount-prefix needs a value}; shift 2 ;;
    --insecure) insecure=1; shift ;;
    --yes) yes=1; shift ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

[[ $(id -u) == 0 || -n $ROOT ]] || die "run it as root (sudo bash -s -- ...)"

if ((uninstall)); then
  if ((start)) && command -v systemctl >/dev/null; then systemctl disable --now nfs-ha-agent 2>/dev/null || true; fi
  # The package's removal keeps the epoch memory (/var/lib/nfs-ha-agent), as this does.
  if [[ -z $ROOT ]] && dpkg-query -W -f='${Status}' nfs-ha-agent 2>/dev/null | grep -q 'install ok installed'; then dpkg --remove nfs-ha-agent >/dev/null; fi
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
need sqlite3 sqlite3
need ip iproute2
need arping arping
need perl perl-base
need curl curl
if [[ -n $package ]]; then
  [[ $package == *.deb && -f $package ]] || die "--package $package: give the nfs-ha-agent_<version>_amd64.deb file"
  packaged=1
elif [[ -x $PACKAGED ]]; then
  packaged=1
elif [[ -n $PACKAGE_SHA256 && $(dpkg --print-architecture 2>/dev/null) == amd64 ]]; then
  # The package this control plane serves: a node needs no Node of its own.
  packaged=1 served=1
else
  packaged=0
  need node nodejs
fi
if ((${#missing[@]})); then
  die "missing ${missing[*]}; install them with: apt-get install ${missing[*]}"
fi
if ((!packaged)); then
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  ((node_major >= 22)) || die "Node.js $(node --version) is too old for the agent bundle (22 or later; Debian 12 ships 18): use the agent package, which carries its own runtime: --package nfs-ha-agent_<version>_amd64.deb (README, \"The agent package\")"
fi

# --- transport -------------------------------------------------------------------------------
case $CONTROL_PLANE in
  https://*) proto='=https' ;;
  http://*)
    ((insecure)) || die "the control plane is $CONTROL_PLANE: plain HTTP sends this node's credential in clear; use https, or --insecure for a lab"
    proto='=http,https'
    say "warning: --insecure: talking to $CONTROL_PLANE over plain HTTP"
    ;;
  *) die "the control plane URL must be http(s)://…, not $CONTROL_PLANE" ;;
esac
fetch() { curl -fsS --proto "$proto" --retry 3 "$@"; }
if [[ -n $sha256 ]]; then
  [[ $sha256 =~ ^[0-9a-f]{64}$ ]] || die "--sha256 takes the 64 hex digits nfs-ha enrol printed"
  if ((served)); then PACKAGE_SHA256=$sha256; else BUNDLE_SHA256=$sha256; fi
else
  say "no --sha256: checking the agent against the checksum this script was served with (the same server); pass the one nfs-ha enrol printed to check it end to end"
fi

# --- what this node lets the cluster touch ---------------------------------------------------
token=''
if [[ -n $token_file ]]; then
  if [[ $token_file == - ]]; then token=$(cat); else token=$(cat -- "$token_file") || die "cannot read $token_file"; fi
  token=${token//[[:space:]]/}
  [[ $token =~ ^nfsha_en_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$ ]] || die "that is not an enrolment token (nfsha_en_…); ask for one with: nfs-ha enrol <cluster> <node>"
fi
allowed=''
if ((${#devices[@]})) || [[ -n $vg || -n $prefix ]]; then
  if ((${#devices[@]} == 0)) || [[ -z $vg || -z $prefix ]]; then die "give the whole allowed set: --device (each shared device), --vg and --mount-prefix"; fi
  for d in "${devices[@]}"; do
    [[ $d =~ ^/dev/(disk/by-(id|path|uuid|partuuid)|mapper)/[A-Za-z0-9_.:+@=-]+$ ]] || die "--device $d: give a stable name under /dev/disk/by-id/, /dev/disk/by-path/ or /dev/mapper/"
  done
  [[ $vg =~ ^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,126}$ ]] || die "--vg $vg is not an LVM volume group name"
  [[ $prefix =~ ^(/[A-Za-z0-9_.:+@=-]+)+$ ]] || die "--mount-prefix $prefix: an absolute path, like /srv/nfs"
  allowed=$(printf '%s\n' "${devices[@]}")
  say "this node will let the cluster use:"
  for d in "${devices[@]}"; do say "  device        $d"; done
  say "  volume group  $vg"
  say "  mounts under  $prefix"
  if ((!yes)); then
    { : </dev/tty; } 2>/dev/null || die "no terminal to confirm on: check the list above, then run again with --yes"
    printf 'nfs-ha install: is that right? [y/N] ' >/dev/tty
    read -r answer </dev/tty
    [[ $answer == [yY]* ]] || die "not confirmed; nothing changed"
  fi
elif [[ -n $token || ! -f $CONFIG ]]; then
  die "say what this node lets the cluster touch: --device PATH (each shared device), --vg NAME, --mount-prefix PATH"
fi

# --- this node's credential (before the download: a refused token changes nothing) -----------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$CONFIG")"
chmod 0700 "$(dirname "$CONFIG")"
if [[ -n $token ]]; then
  say "exchanging the enrolment token"
  (
    umask 077
    printf '{"token":"%s"}' "$token" >"$tmp/enrol.json"
  )
  fetch -H 'content-type: application/json' --data @"$tmp/enrol.json" "$CONTROL_PLANE/v1/enrol" -o "$tmp/enrolled.json" ||
    die "the control plane refused the enrolment token (already used, expired or revoked?); ask for a new one"
elif [[ -f $CONFIG ]]; then
  say "keeping this node's credential in $CONFIG"
else
  die "this node is not enrolled yet: pass --token-file <file with the enrolment token>"
fi

# --- the agent: the package, or the bundle verified ---------------------------------------------
changed=1
if ((packaged)); then
  if ((served)); then
    say "downloading the agent package from $CONTROL_PLANE"
    fetch "$CONTROL_PLANE/install/nfs-ha-agent.deb" -o "$tmp/nfs-ha-agent.deb" || die "cannot download the agent package from $CONTROL_PLANE"
    echo "$PACKAGE_SHA256  $tmp/nfs-ha-agent.deb" | sha256sum --check --status ||
      die "the downloaded agent package does not match its checksum ($PACKAGE_SHA256); not installing it"
    package=$tmp/nfs-ha-agent.deb
  fi
  if [[ -n $package ]]; then
    before=$(dpkg-query -W -f='${Version}' nfs-ha-agent 2>/dev/null || true)
    say "installing the agent package $package"
    # apt resolves its Depends (the node tools); its postinst never starts or restarts a serving agent.
    apt-get install -y -q --no-install-recommends "$(realpath -- "$package")" >"$tmp/apt.log" 2>&1 || {
      tail -n 20 "$tmp/apt.log" >&2
      die "the package did not install (the apt output is above)"
    }
    [[ $(dpkg-query -W -f='${Version}' nfs-ha-agent) != "$before" ]] || changed=0
  else
    say "using the installed agent package ($PACKAGED)"
    changed=0
  fi
  agent=("$PACKAGED")
  # The package's unit (/lib/systemd/system) serves; an installer's unit or bundle from before would shadow it.
  rm -f "$UNIT" "$LIB/nfs-ha-agent.mjs"
  rmdir "$LIB" 2>/dev/null || true
else
  say "downloading the agent from $CONTROL_PLANE"
  fetch "$CONTROL_PLANE/install/nfs-ha-agent.mjs" -o "$tmp/nfs-ha-agent.mjs" || die "cannot download the agent from $CONTROL_PLANE"
  echo "$BUNDLE_SHA256  $tmp/nfs-ha-agent.mjs" | sha256sum --check --status || die "the downloaded agent does not match its checksum ($BUNDLE_SHA256); not installing it"
  mkdir -p "$LIB" "$(dirname "$UNIT")"
  if [[ -f $LIB/nfs-ha-agent.mjs ]] && cmp -s "$tmp/nfs-ha-agent.mjs" "$LIB/nfs-ha-agent.mjs"; then changed=0; fi
  install -m 0644 "$tmp/nfs-ha-agent.mjs" "$LIB/nfs-ha-agent.mjs"
  cat >"$UNIT" <<'NFSHA_UNIT'
@@AGENT_UNIT@@
NFSHA_UNIT
  agent=(node "$LIB/nfs-ha-agent.mjs")
fi

# --- the configuration: new values over what the node has, checked by the agent --------------
configure=(configure --config "$CONFIG" --control-plane "$CONTROL_PLANE")
((insecure)) && configure+=(--insecure)
[[ -f $tmp/enrolled.json ]] && configure+=(--enrolled "$tmp/enrolled.json")
if [[ -n $allowed ]]; then
  for d in "${devices[@]}"; do configure+=(--device "$d"); done
  configure+=(--vg "$vg" --mount-prefix "$prefix")
fi
"${agent[@]}" "${configure[@]}" || die "the agent refused the configuration (above); nothing is started"
chmod 0600 "$CONFIG"

# --- preflight: the agent checks this node against the cluster's spec ------------------------
if [[ -z $ROOT && ! -e /dev/watchdog ]]; then
  say "no /dev/watchdog: loading softdog with a 1 s timeout (the default timing allows at most 1.92 s)"
  echo softdog >/etc/modules-load.d/nfs-ha-softdog.conf
  echo 'options softdog soft_margin=1' >/etc/modprobe.d/nfs-ha-softdog.conf
  modprobe softdog soft_margin=1
fi
# A node whose agent runs and serves is being refreshed: what the preflight finds is reported,
# but the reload goes ahead (it changes only the credential and the peer secrets; the running
# agent's resources are not started again, and the service must not move).
serving=0
if ((start)) && systemctl is-active --quiet nfs-ha-agent; then
  # "down" (not answering, e.g. just restarted by the package) counts as serving: only a reload then.
  role=$("${agent[@]}" role --config "$CONFIG" 2>/dev/null || echo unknown)
  [[ $role == passive ]] || serving=1
fi
say "preflight"
if ! "${agent[@]}" validate --config "$CONFIG"; then
  ((serving)) || die "preflight failed: fix the problems above, then run the installer again (the credential is kept)"
  say "warning: the preflight found the problems above on this serving node; reloading anyway (nothing restarts): fix them before its next start"
fi

if ((!start)); then
  say "installed; not started (--no-start)"
  exit 0
fi
systemctl daemon-reload
systemctl enable nfs-ha-agent >/dev/null 2>&1
if ! systemctl is-active --quiet nfs-ha-agent; then
  systemctl start nfs-ha-agent
  say "nfs-ha-agent is running: journalctl -u nfs-ha-agent -f"
  exit 0
fi
# Refreshing a node must not move the service: a restart would make an active agent demote.
if ((!serving)); then
  systemctl restart nfs-ha-agent
  say "nfs-ha-agent restarted (this node is passive: nothing moves)"
else
  systemctl reload nfs-ha-agent
  say "this node's agent is $role: reloaded its configuration instead of restarting it (a restart would fail the service over)"
  if ((changed)); then say "the new agent version takes over at its next restart: switch over first (nfs-ha switchover <cluster> --to <peer>), then run this again"; fi
fi
