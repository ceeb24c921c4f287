# shellcheck shell=bash
# Shared by gce.sh, aws-ec2.sh and container.sh (sourced, not run): the drill host's first-boot script, the wait
# for its SSH host key, and the record of what was created, so that `delete` removes exactly that and nothing else.
#
# The drill connects as root with strict host key checking (the restore action's `known-hosts`), so the new host
# must present a host key known in advance: DRILL_HOST_KEY, an ed25519 key made once for drills
#   ssh-keygen -t ed25519 -N '' -C looker-drill-host -f drill_host_key
# (the private key in a secret; `known-hosts` is "* $(cat drill_host_key.pub)"). The host learns it at first boot
# from its instance metadata (GCE), user data (EC2) or environment (container): anyone who can read those can read
# the key, which is why it is a key for drill hosts only. DRILL_AUTHORIZED_KEY is the public half of the action's
# `ssh-key`, authorized for root.

set -euo pipefail

# Every host, disk or container these scripts create carries this label (tag), and `delete` removes only a
# resource that carries it and was recorded by `create` in this job.
# shellcheck disable=SC2034 # used by the scripts that source this file
DRILL_LABEL_KEY="looker-backup"
# shellcheck disable=SC2034
DRILL_LABEL_VALUE="drill"
# Unique per workflow run and attempt, so a second drill never mistakes the first one's host for its own.
DRILL_RUN="${GITHUB_RUN_ID:-local}-${GITHUB_RUN_ATTEMPT:-1}"
DRILL_STATE_DIR="${DRILL_STATE_DIR:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}"
DRILL_READY_TIMEOUT="${DRILL_READY_TIMEOUT:-900}"
# Looker runs on Java; the drill host gets it at first boot, with what the looker script and the drill use.
DRILL_PACKAGES="${DRILL_PACKAGES:-openjdk-17-jre-headless curl tar procps}"
DRILL_DISK_GB="${DRILL_DISK_GB:-50}"
# external (the host's public address) or internal (its address in the network, for a runner inside it).
DRILL_ADDRESS="${DRILL_ADDRESS:-external}"

log() { printf '%s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# A name for what this run creates: looker-drill-<UTC time>-<run>, lower case, at most 63 characters.
drill_name() {
  local name
  name="looker-drill-$(date -u +%Y%m%d%H%M%S)-${DRILL_RUN}"
  printf '%s' "${name:0:63}" | tr '[:upper:]' '[:lower:]'
}

# The record of what `create` made, one KEY=value per line; `delete` reads it (never sources it).
state_file() { printf '%s/looker-drill-%s.state' "$DRILL_STATE_DIR" "$1"; }

state_write() { # provider KEY=value...
  local file
  file="$(state_file "$1")"
  shift
  mkdir -p "$DRILL_STATE_DIR"
  (umask 077 && printf '%s\n' "$@" >"$file")
}

state_get() { # provider KEY
  local file
  file="$(state_file "$1")"
  [ -f "$file" ] || return 1
  sed -n "s/^$2=//p" "$file" | head -n 1
}

state_refuse_existing() { # provider
  local file
  file="$(state_file "$1")"
  if [ -f "$file" ]; then
    die "$file records a drill host that was not deleted; run '$0 delete' first"
  fi
}

state_clear() { rm -f "$(state_file "$1")"; }

# A private directory (DRILL_TMP) for the files that carry keys, removed when the script exits, however it exits.
private_tmp() {
  DRILL_TMP="$(mktemp -d)"
  trap 'rm -rf "$DRILL_TMP"' EXIT
}

require_keys() {
  [ -n "${DRILL_HOST_KEY:-}" ] || die "DRILL_HOST_KEY (the drill host's ed25519 private host key) is not set"
  [ -n "${DRILL_AUTHORIZED_KEY:-}" ] || die "DRILL_AUTHORIZED_KEY (the public key of the drill's ssh-key) is not set"
  command -v ssh-keygen >/dev/null || die "ssh-keygen is needed (openssh-client)"
  command -v ssh-keyscan >/dev/null || die "ssh-keyscan is needed (openssh-client)"
}

# The public half of DRILL_HOST_KEY ("ssh-ed25519 AAAA..."), which the new host must present.
expected_host_key() {
  local dir key
  dir="$(mktemp -d)"
  (umask 077 && printf '%s\n' "$DRILL_HOST_KEY" >"$dir/key")
  key="$(ssh-keygen -y -f "$dir/key" | awk '{ print $1 " " $2 }')"
  rm -rf "$dir"
  [ -n "$key" ] || die "DRILL_HOST_KEY is not a private key ssh-keygen can read"
  printf '%s' "$key"
}

# The script the new host runs as root at first boot: packages first, then root's authorized key, then the known
# host key and an sshd restart, so that once the host presents that key it is ready for the drill.
first_boot_script() {
  cat <<SCRIPT
#!/bin/sh
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends openssh-server ${DRILL_PACKAGES}
install -d -m 700 /root/.ssh
cat > /root/.ssh/authorized_keys <<'KEY'
${DRILL_AUTHORIZED_KEY}
KEY
chmod 600 /root/.ssh/authorized_keys
umask 077
cat > /etc/ssh/ssh_host_ed25519_key <<'KEY'
${DRILL_HOST_KEY}
KEY
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
mkdir -p /etc/ssh/sshd_config.d /run/sshd
printf '%s\n' 'HostKey /etc/ssh/ssh_host_ed25519_key' 'PermitRootLogin prohibit-password' \
  > /etc/ssh/sshd_config.d/00-looker-drill.conf
SCRIPT
}

# first_boot_script for a VM, ending with an sshd restart: only then does the host present the known key.
first_boot_script_vm() {
  first_boot_script
  printf '%s\n' 'systemctl restart ssh.service'
}

# Waits until host:port presents the expected host key, then returns; fails after DRILL_READY_TIMEOUT seconds.
wait_for_host_key() { # host [port]
  local host="$1" port="${2:-22}" expected deadline offered
  expected="$(expected_host_key)"
  deadline=$(($(date +%s) + DRILL_READY_TIMEOUT))
  log "waiting for ${host}:${port} to present the drill host key (up to ${DRILL_READY_TIMEOUT} s)"
  while :; do
    offered="$(ssh-keyscan -T 5 -p "$port" -t ed25519 "$host" 2>/dev/null | awk '{ print $2 " " $3 }' || true)"
    if [ "$offered" = "$expected" ]; then
      log "${host}:${port} is ready"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      die "${host}:${port} did not present the drill host key within ${DRILL_READY_TIMEOUT} s"
    fi
    sleep 10
  done
}
