#!/usr/bin/env bash
# An ephemeral drill host in a local Podman or Docker container running sshd, for the restore drill's
# provision-command and teardown-command (or `looker-backup drill --provision-command`) on one machine:
#   container.sh create   starts a container, waits until it is ready, prints its address as the last line of stdout
#   container.sh delete   removes the container that `create` started in this job, nothing else
# The drill reaches the container at its own address on the engine's bridge network, which the host can reach
# with Docker and with rootful Podman (not with rootless Podman's default network). Needs ssh-keygen and
# ssh-keyscan, and common.sh beside this file. Everything but the address goes to stderr.
#
# Settings (environment):
#   DRILL_CONTAINER_ENGINE                 podman or docker (default: podman when installed, else docker)
#   DRILL_CONTAINER_IMAGE                  default docker.io/library/debian:12 (apt-based: it installs sshd and Java)
#   DRILL_CONTAINER_NETWORK                a network to attach the container to (default: the engine's default)
#   DRILL_HOST_KEY, DRILL_AUTHORIZED_KEY   see common.sh (required for create)
#   DRILL_PACKAGES, DRILL_READY_TIMEOUT, DRILL_STATE_DIR: see common.sh
# The container is labelled looker-backup=drill and looker-drill-run=<workflow run>.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

PROVIDER=container

engine() {
  if [ -n "${DRILL_CONTAINER_ENGINE:-}" ]; then
    printf '%s' "$DRILL_CONTAINER_ENGINE"
  elif command -v podman >/dev/null; then
    printf podman
  elif command -v docker >/dev/null; then
    printf docker
  else
    die "neither podman nor docker is installed (or set DRILL_CONTAINER_ENGINE)"
  fi
}

create() {
  require_keys
  state_refuse_existing "$PROVIDER"
  local engine name id address network=()
  engine="$(engine)"
  name="$(drill_name)"
  # The first-boot script holds the keys: it reaches the container as a read-only file, not in its command line
  # or environment (which `inspect` shows), and is removed once the container is ready.
  private_tmp
  (umask 077 && { first_boot_script && printf '%s\n' 'exec /usr/sbin/sshd -D -e'; } >"$DRILL_TMP/boot.sh")
  if [ -n "${DRILL_CONTAINER_NETWORK:-}" ]; then network=(--network "$DRILL_CONTAINER_NETWORK"); fi
  log "starting $name with $engine"
  id="$("$engine" run --detach --name "$name" \
    --label "${DRILL_LABEL_KEY}=${DRILL_LABEL_VALUE}" --label "looker-drill-run=${DRILL_RUN}" \
    --volume "$DRILL_TMP/boot.sh:/looker-drill-boot.sh:ro" \
    "${network[@]}" \
    "${DRILL_CONTAINER_IMAGE:-docker.io/library/debian:12}" /bin/sh /looker-drill-boot.sh)"
  state_write "$PROVIDER" "id=$id" "engine=$engine"
  address="$("$engine" inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" |
    awk '{ print $1 }')"
  [ -n "$address" ] || die "$name has no address on a bridge network (rootless Podman? see the comment above)"
  wait_for_host_key "$address"
  printf '%s\n' "$address"
}

delete() {
  local id engine label
  if ! id="$(state_get "$PROVIDER" id)" || [ -z "$id" ]; then
    log "no drill container recorded in $(state_file "$PROVIDER"): nothing to delete"
    return 0
  fi
  engine="$(state_get "$PROVIDER" engine)"
  private_tmp
  if ! label="$("$engine" inspect --format "{{ index .Config.Labels \"${DRILL_LABEL_KEY}\" }}" "$id" \
    2>"$DRILL_TMP/error")"; then
    # Gone (removed by hand) is done; any other failure (the engine not answering) keeps the record.
    grep -qi 'no such' "$DRILL_TMP/error" || die "cannot inspect container $id: $(cat "$DRILL_TMP/error")"
    log "container $id does not exist (any more)"
    state_clear "$PROVIDER"
    return 0
  fi
  [ "$label" = "$DRILL_LABEL_VALUE" ] || die "container $id is not labelled ${DRILL_LABEL_KEY}=${DRILL_LABEL_VALUE}: not removing it"
  log "removing container $id"
  "$engine" rm --force --volumes "$id" >&2
  state_clear "$PROVIDER"
}

case "${1:-}" in
  create) create ;;
  delete) delete ;;
  *) die "usage: $0 create|delete" ;;
esac
